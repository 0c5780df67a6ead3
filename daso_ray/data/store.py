"""The portable copy of a prepared split: one Arrow IPC file, read memory-mapped.

It holds the labels every split is built from, serves the torch DataLoader fallback (machines
where FFCV cannot build) and the hidden unlabeled labels for pseudo-label diagnostics. Columns:
``label`` int64, ``index`` int64 and either ``pixels`` (fixed-size binary, H*W*3 raw uint8, for
32/96-px sources) or ``jpeg`` (binary, for 224-px image-file sources).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa

from daso_ray.errors import UserError

CHUNK = 4096


def write_store(path: Path, batches: Iterable[tuple[np.ndarray, np.ndarray | list[bytes]]],
                shape: tuple[int, int] | None) -> None:
    """Write (labels int64 [n], images uint8 [n,H,W,3] or list of JPEG bytes) chunks to ``path``.

    ``shape`` is (H, W) for raw pixels, None for JPEG bytes.
    """
    kind = pa.binary(shape[0] * shape[1] * 3) if shape else pa.binary()
    col = "pixels" if shape else "jpeg"
    schema = pa.schema([("label", pa.int64()), ("index", pa.int64()), (col, kind)],
                       metadata={"shape": "x".join(map(str, shape)) if shape else ""})
    start = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for labels, images in batches:
            n = len(labels)
            if shape:
                buf = pa.py_buffer(np.ascontiguousarray(images, dtype=np.uint8))
                data = pa.FixedSizeBinaryArray.from_buffers(kind, n, [None, buf])
            else:
                data = pa.array(images, type=kind)
            idx = pa.array(np.arange(start, start + n, dtype=np.int64))
            writer.write_batch(pa.record_batch([pa.array(labels, pa.int64()), idx, data], schema=schema))
            start += n


class Store:
    """Memory-mapped reader. ``images(idx)`` -> uint8 [n, H, W, 3] (raw) or JPEG bytes list."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise UserError(f"missing prepared file {path} — run python -m daso_ray.prepare")
        try:
            self._table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
        except pa.ArrowInvalid as exc:
            raise UserError(f"corrupt prepared file {path} ({exc}) — re-run prepare") from None
        self.path = path
        self.labels = self._table.column("label").to_numpy()
        meta = (self._table.schema.metadata or {}).get(b"shape", b"").decode()
        self.shape = tuple(int(v) for v in meta.split("x")) if meta else None
        if self.shape:
            # Zero-copy views of each record batch's data buffer.
            chunks = self._table.column("pixels").chunks
            h, w = self.shape
            self._chunks = [np.frombuffer(c.buffers()[1], np.uint8, count=len(c) * h * w * 3,
                                          offset=c.offset * h * w * 3).reshape(len(c), h, w, 3)
                            for c in chunks]
            self._starts = np.cumsum([0] + [len(c) for c in chunks])

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, idx: np.ndarray) -> np.ndarray:
        """Raw stores: uint8 [len(idx), H, W, 3] gathered from the memory map."""
        idx = np.asarray(idx, dtype=np.int64)
        if len(self._chunks) == 1:
            return self._chunks[0][idx]
        which = np.searchsorted(self._starts, idx, side="right") - 1
        out = np.empty((len(idx), *self._chunks[0].shape[1:]), np.uint8)
        for c in np.unique(which):
            sel = which == c
            out[sel] = self._chunks[c][idx[sel] - self._starts[c]]
        return out

    def jpeg(self, i: int) -> bytes:
        return self._table.column("jpeg")[int(i)].as_py()


def data_path(root: Path, split: str, suffix: str) -> Path:
    """``root/<split>.<suffix>`` (``arrow`` or ``beton``) of a prepared folder; a missing file
    is a UserError that says how to write it."""
    path = root / f"{split}.{suffix}"
    if not path.is_file():
        raise UserError(f"missing prepared file {path} — run python -m daso_ray.prepare with "
                        f"--out {root}" + (" on a machine with FFCV" if suffix == "beton" else ""))
    return path


class Stores:
    """The Arrow stores of one prepared folder by split name, each opened on first use and then
    shared: the split is built from their labels, and the torch backend and the hidden labels of
    U read the same objects (the label column is read once per run, not once per reader)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._open: dict[str, Store] = {}

    def __call__(self, split: str) -> Store:
        if split not in self._open:
            self._open[split] = Store(data_path(self.root, split, "arrow"))
        return self._open[split]
