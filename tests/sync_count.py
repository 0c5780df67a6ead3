"""Count the calls that force a host <-> device synchronisation on CUDA, on any device.

On a GPU, ``torch.cuda.set_sync_debug_mode`` reports synchronising kernels; on CPU nothing
synchronises, so this counter patches the Python entry points that *would* synchronise on CUDA
(reading a value to the host, data-dependent output shapes, host-built tensors) and counts their
calls while active. Used by the sync-free-step test so the property holds without a GPU.
"""

from __future__ import annotations

import collections
import contextlib
import traceback

import torch

# Tensor methods that read device values to the host (or have data-dependent output shapes).
# ``numpy`` is absent on purpose: on a CUDA tensor it raises instead of synchronising, so host
# tensors (augmentation parameters) may use it freely.
TENSOR_METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero",
                  "unique", "cpu", "masked_select", "repeat_interleave")
# torch functions that synchronise on CUDA (output size depends on the data, or host -> device
# copies of Python data).
TORCH_FUNCTIONS = ("nonzero", "unique", "bincount", "masked_select", "repeat_interleave", "tensor",
                   "argwhere")


class SyncCounter:
    """``with SyncCounter() as c: ...`` then ``c.count`` and ``c.where`` (call sites)."""

    def __init__(self):
        self.count = 0
        self.where: collections.Counter = collections.Counter()
        self._saved: list[tuple[object, str, object]] = []
        self._inside = False

    def _wrap(self, owner, name: str):
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            if not self._inside:
                self._inside = True  # calls made by a counted call are not counted again
                try:
                    self._hit(name)
                    return original(*args, **kwargs)
                finally:
                    self._inside = False
            return original(*args, **kwargs)

        self._saved.append((owner, name, original))
        setattr(owner, name, counted)

    def _getitem(self):
        original = torch.Tensor.__getitem__

        def getitem(t, index):
            items = index if isinstance(index, tuple) else (index,)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items):
                self._hit("__getitem__[bool mask]")  # boolean masks have data-dependent shapes
            return original(t, index)

        self._saved.append((torch.Tensor, "__getitem__", original))
        torch.Tensor.__getitem__ = getitem
        original_set = torch.Tensor.__setitem__

        def setitem(t, index, value):
            items = index if isinstance(index, tuple) else (index,)
            masked = any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)
            if isinstance(value, (int, float, bool)) and not masked:
                # A Python scalar written through an index goes through a host tensor: on CUDA a
                # blocking copy (seen on an H200 in RandAugment's Sharpness before it was
                # cached). Under a boolean mask it becomes ``masked_fill_``, which does not sync.
                self._hit("__setitem__[python scalar]")
            return original_set(t, index, value)

        self._saved.append((torch.Tensor, "__setitem__", original_set))
        torch.Tensor.__setitem__ = setitem

    def _hit(self, name: str) -> None:
        self.count += 1
        frame = next((f for f in reversed(traceback.extract_stack()[:-2])
                      if "sync_count" not in f.filename), None)
        self.where[f"{name} @ {frame.filename.split('/')[-1]}:{frame.lineno}" if frame else name] += 1

    def __enter__(self) -> SyncCounter:
        for name in TENSOR_METHODS:
            if hasattr(torch.Tensor, name):
                self._wrap(torch.Tensor, name)
        for name in TORCH_FUNCTIONS:
            self._wrap(torch, name)
        self._getitem()
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()


@contextlib.contextmanager
def counting():
    with SyncCounter() as c:
        yield c
