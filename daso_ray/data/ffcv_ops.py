"""FFCV pipeline pieces (imports ffcv; only loaded when ``data.loader: ffcv``).

FFCV has no reflect-pad crop (its RandomTranslate fills with a constant) and no RandAugment, so the
weak view is one numba Operation here, and the strong view's RandAugment + Cutout run batched on the
device after ``ToTensor`` (platform.md §2.5).

On a CUDA training device the train pipelines end in FFCV's ``ToDevice(non_blocking=True)``, as in
FFCV's ImageNet example (github.com/libffcv/ffcv-imagenet, ``train_imagenet.py``): the copy runs on
FFCV's own CUDA stream and its output slots are recycled, so every consumer (``loaders.Views``) copies
what it keeps. FFCV is not installed on the GPU test machine, so this branch has not run on a GPU.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import (
    CenterCropRGBImageDecoder,
    RandomResizedCropRGBImageDecoder,
    SimpleRGBImageDecoder,
)
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.pipeline_spec import PipelineSpec
from ffcv.pipeline.state import State
from ffcv.transforms import RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage


class FlipReflectCrop(Operation):
    """Per sample: horizontal flip (p=0.5), then reflect-pad ``pad`` px and random crop to (H, W).

    Works on the uint8 [N, H, W, 3] batch in FFCV's parallel numba loop.
    """

    def __init__(self, pad: int = 4):
        super().__init__()
        self.pad = pad

    def generate_code(self):
        my_range = Compiler.get_iterator()
        pad = self.pad

        def flip_reflect_crop(images, dst):
            n, h, w = images.shape[0], images.shape[1], images.shape[2]
            flips = np.random.rand(n) < 0.5
            oys = np.random.randint(0, 2 * pad + 1, n)
            oxs = np.random.randint(0, 2 * pad + 1, n)
            for i in my_range(n):
                for y in range(h):
                    sy = y + oys[i] - pad
                    if sy < 0:
                        sy = -sy
                    elif sy >= h:
                        sy = 2 * (h - 1) - sy
                    for x in range(w):
                        sx = x + oxs[i] - pad
                        if sx < 0:
                            sx = -sx
                        elif sx >= w:
                            sx = 2 * (w - 1) - sx
                        if flips[i]:  # crop coordinates live in the flipped image
                            sx = w - 1 - sx
                        dst[i, y, x] = images[i, sy, sx]
            return dst

        flip_reflect_crop.is_parallel = True
        return flip_reflect_crop

    def declare_state_and_memory(self, previous_state: State):
        return (replace(previous_state, jit_mode=True),
                AllocationQuery(previous_state.shape, previous_state.dtype))


def _to_device(device) -> list:
    """[ToDevice] for a CUDA device, else nothing (a CPU batch is already where it is used)."""
    if device is None or torch.device(device).type != "cuda":
        return []
    return [ToDevice(torch.device(device), non_blocking=True)]


def _int_ops(device) -> list:
    """A fresh op list per field (FFCV allocates one output buffer per op node)."""
    return [IntDecoder(), ToTensor(), Squeeze(1), *_to_device(device)]


def _image_ops(mode: str, train: bool, size: int, pad: int, augment: bool = True,
               device=None) -> list:
    """Decoder + ops for one image view -> uint8 NCHW torch tensor (channels_last memory)."""
    tail = [ToTensor(), *_to_device(device), ToTorchImage(channels_last=True)]
    if mode == "raw":
        ops = [SimpleRGBImageDecoder()]
        return ops + ([FlipReflectCrop(pad)] if train and augment else []) + tail
    if train and augment:
        return [RandomResizedCropRGBImageDecoder((size, size)), RandomHorizontalFlip()] + tail
    return [CenterCropRGBImageDecoder((size, size), ratio=1.0)] + tail


def ffcv_loader(path: str, *, mode: str, kind: str, batch_size: int, indices, num_workers: int,
                seed: int, size: int, pad: int, distributed: bool = False,
                augment: bool = True, device=None) -> Loader:
    """kind: 'labeled' -> (image, label, index); 'unlabeled' -> (image, index, image_strong);
    'test' -> (image, label, index), sequential, no augmentation, last partial batch kept.

    Images uint8 [n, 3, S, S] (channels_last memory), labels and indices int64 [n]; on ``device``
    when it is CUDA (else on the host). Note: the ``Loader`` sets torch's thread count to
    ``num_workers`` when built and at every epoch; callers restore theirs (``TrainData``).
    """
    train = kind != "test"
    pipelines = {"image": _image_ops(mode, train, size, pad, augment, device),
                 "index": _int_ops(device), "label": _int_ops(device) if kind != "unlabeled" else None}
    if kind == "unlabeled":
        # One decoder per view: sharing a decoder node makes in-place branches alias (§2.5).
        strong = _image_ops(mode, True, size, pad, device=device)
        pipelines["image_strong"] = PipelineSpec("image", decoder=strong[0], transforms=strong[1:])
    return Loader(path, batch_size=batch_size, num_workers=num_workers,
                  order=OrderOption.RANDOM if train else OrderOption.SEQUENTIAL,
                  indices=None if indices is None else np.asarray(indices),
                  pipelines=pipelines, drop_last=train, seed=seed, distributed=distributed,
                  os_cache=True)
