"""FFCV pipeline pieces (imports ffcv; only loaded when ``data.loader: ffcv``).

FFCV has no reflect-pad crop (its RandomTranslate fills with a constant) and no RandAugment, so the
weak view is one numba Operation here, and the strong view's RandAugment + Cutout run batched on the
device after ``ToTensor``: torch modules placed before ``ToTensor`` fail in FFCV's numba pipeline
("Cannot determine Numba type of ModuleWrapper", libffcv/ffcv#264).

On a CUDA training device the train pipelines end in FFCV's ``ToDevice(non_blocking=True)``, as in
FFCV's ImageNet example (github.com/libffcv/ffcv-imagenet, ``train_imagenet.py``): the copy runs on
FFCV's own CUDA stream and its output slots are recycled, so every consumer (``loaders.Views``) copies
what it keeps. FFCV is not installed on the GPU test machine, so this branch has not run on a GPU.

Train streams (``sampler=``) read the batches of a :class:`~daso_ray.data.loaders.PassSampler`
through :class:`PassOrder`: the same indices, in the same order, as the torch backend — passes
concatenated, so a set smaller than one batch still fills every batch, and each DDP rank reads its
own share. Determinism: the order is a pure function of ``run.seed``; before every batch the
numba generator of the thread that runs FFCV's pipeline is seeded from (seed, global batch number);
and the ops run in a fixed order (FFCV's own depends on memory addresses, which swapped the weak and
strong views' draws). So raw-pixel datasets (CIFAR, STL-10, digits) give bit-identical batches run
after run, and after a resume (tested on CPU). What stays non-deterministic: the random-resized
crop of JPEG datasets (Semi-Aves, folders) is drawn inside FFCV's parallel decoder loop, i.e. by
numba's worker threads, whose generators cannot be seeded per batch; with ``data.num_workers: 1``
that loop is serial and those crops are reproducible too.
"""

from __future__ import annotations

from dataclasses import replace
from queue import Full

import numpy as np
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import (
    CenterCropRGBImageDecoder,
    RandomResizedCropRGBImageDecoder,
    SimpleRGBImageDecoder,
)
from ffcv.loader import Loader, OrderOption
from ffcv.loader.epoch_iterator import EpochIterator
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.pipeline_spec import PipelineSpec
from ffcv.pipeline.state import State
from ffcv.transforms import RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage
from ffcv.traversal_order.base import TraversalOrder
from numba import njit

MIN_BATCHES_PER_EPOCH = 16  # FFCV allocates and starts a thread per epoch: keep epochs long


class FlipReflectCrop(Operation):
    """Per sample: horizontal flip (p=0.5), then reflect-pad ``pad`` px and random crop to (H, W).

    Works on the uint8 [N, H, W, 3] batch in FFCV's parallel numba loop. Every draw is made
    before that loop, one sample after the other: numba's generators are per thread, and only
    the thread running the pipeline is seeded (by :class:`SeededEpoch`, before every batch) —
    a draw inside the parallel loop would come from an unseeded worker thread's generator.
    """

    def __init__(self, pad: int = 4):
        super().__init__()
        self.pad = pad

    def generate_code(self):
        my_range = Compiler.get_iterator()
        pad = self.pad

        def flip_reflect_crop(images, dst):
            n, h, w = images.shape[0], images.shape[1], images.shape[2]
            flips = np.empty(n, np.bool_)
            oys = np.empty(n, np.int64)
            oxs = np.empty(n, np.int64)
            for i in range(n):  # in the pipeline's thread, in sample order (see above)
                flips[i] = np.random.random() < 0.5
                oys[i] = np.random.randint(0, 2 * pad + 1)
                oxs[i] = np.random.randint(0, 2 * pad + 1)
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


@njit(cache=False)
def _seed_numba(seed):
    """Seed numba's generator of the calling thread (NumPy's own is another one)."""
    np.random.seed(seed)


def batch_seed(seed: int, k: int) -> int:
    """The numba seed of global batch ``k`` of a stream seeded ``seed`` (a pure function, so a
    resumed stream draws what an uninterrupted one would)."""
    return int(np.random.SeedSequence([seed, k, 0x5EED]).generate_state(1)[0])


class PassOrder(TraversalOrder):
    """FFCV traversal order that serves a ``PassSampler``'s batches, ``per_epoch`` per FFCV epoch,
    from global batch ``start`` on (the consumer sets ``start`` before each epoch).

    FFCV's own orders permute the set once per epoch and, with ``drop_last``, yield no batch at
    all from a set smaller than a batch — an endless loop of empty epochs. Passes concatenated (as
    the torch backend does) never run dry, and the rank's share comes from the sampler, so FFCV's
    ``distributed`` mode (which shards and pads on its own) is not used.
    """

    def __init__(self, sampler, per_epoch: int):  # bound to its loader in __call__
        self.sampler, self.per_epoch, self.start = sampler, per_epoch, sampler.consumed
        self.seed, self.distributed = sampler.seed, False

    def __call__(self, loader):
        # ffcv 1.0.2 accepts a TraversalOrder *instance* and calls it with the loader.
        self.loader, self.indices = loader, loader.indices
        return self

    def sample_order(self, epoch: int) -> np.ndarray:
        ks = range(self.start, self.start + self.per_epoch)
        return np.concatenate([self.sampler.batch_at(k) for k in ks])


class SeededEpoch(EpochIterator):
    """FFCV's epoch thread, plus: numba's generator seeded before each batch (global batch
    ``first + b``), and a failure in the thread re-raised to the consumer — FFCV's own thread
    just dies and leaves the consumer waiting on its queue for ever."""

    def __init__(self, loader, order, seed: int, first: int):
        self.seed, self.first, self.error = seed, first, None
        super().__init__(loader, order)  # starts the thread: set our fields first

    def run_pipeline(self, b_ix, batch_indices, batch_slot, cuda_event):
        _seed_numba(batch_seed(self.seed, self.first + b_ix))
        return super().run_pipeline(b_ix, batch_indices, batch_slot, cuda_event)

    def run(self):
        try:
            super().run()
        except BaseException as err:  # noqa: BLE001 - handed to the consumer in __next__
            self.error = err
            while not self.terminate_event.is_set():
                try:
                    self.output_queue.put(None, timeout=0.5)  # wakes the consumer
                    return
                except Full:
                    pass

    def __next__(self):
        try:
            return super().__next__()
        except StopIteration:
            if self.error is not None:
                raise RuntimeError(f"the FFCV loader thread failed: {self.error!r}") from self.error
            raise


def _group_operations_in_order(graph) -> list[list[int]]:
    """ffcv 1.0.2's ``Graph.group_operations`` with each stage's nodes in creation order.

    FFCV walks the nodes through a ``set``, i.e. in memory-address order, so the weak and the
    strong view's crops — two ops drawing from one generator — ran in either order from one
    loader to the next, and swapped their draws. (Also: a fresh deferred list per stage, where
    FFCV reuses one set as both the stage being emptied and the next one.)
    """
    front, stages = sorted(graph.root_nodes, key=lambda n: n.id), []
    while front:
        jitted, stage, later = len(stages) % 2 == 0, [], []
        while front:
            node = front.pop(0)
            if node.is_jitted == jitted or node.is_jitted is None:
                stage.append(graph.node_to_id[node])
                front = sorted({*front, *graph.adjacency_list[node]}, key=lambda n: n.id)
            else:
                later.append(node)
        stages.append(stage)
        front = sorted(set(later), key=lambda n: n.id)
    return stages


class SeededLoader(Loader):
    """``Loader`` whose epochs are :class:`SeededEpoch` threads and whose ops run in a fixed
    order (:func:`_group_operations_in_order`)."""

    def generate_code(self):
        self.graph.group_operations = lambda: _group_operations_in_order(self.graph)
        return super().generate_code()

    def __iter__(self):
        # ffcv 1.0.2's Loader.__iter__, with our epoch class.
        Compiler.set_num_threads(self.num_workers)
        order = self.next_traversal_order()
        selected = order[:len(self) * self.batch_size]
        if isinstance(self.traversal_order, PassOrder):
            first = self.traversal_order.start
        else:
            first = self.next_epoch * len(self)
        self.next_epoch += 1
        if self.code is None or self.recompile:
            self.generate_code()
        return SeededEpoch(self, selected, self.seed, first)


def ffcv_loader(path: str, *, mode: str, kind: str, batch_size: int, indices, num_workers: int,
                seed: int, size: int, pad: int, distributed: bool = False,
                augment: bool = True, device=None, sampler=None, strong_views: int = 1) -> Loader:
    """kind: 'labeled' -> (image, label, index); 'unlabeled' -> (image, index, image_strong) plus
    ``image_strong2`` when ``strong_views`` is 2; 'test' -> (image, label, index), sequential, no
    augmentation, last partial batch kept.

    ``sampler`` (a ``PassSampler``, train kinds): read its batches — this rank's share of each
    global batch — through :class:`PassOrder`; ``batch_size``, ``indices``, ``seed`` and
    ``distributed`` then come from it. Without it a train kind permutes ``indices`` per epoch.

    Images uint8 [n, 3, S, S] (channels_last memory), labels and indices int64 [n]; on ``device``
    when it is CUDA (else on the host). Note: the ``Loader`` sets torch's thread count to
    ``num_workers`` when built and at every epoch; callers restore theirs (``FfcvStreams``).
    """
    train = kind != "test"
    pipelines = {"image": _image_ops(mode, train, size, pad, augment, device),
                 "index": _int_ops(device), "label": _int_ops(device) if kind != "unlabeled" else None}
    strong_names = ("image_strong", "image_strong2")[:strong_views] if kind == "unlabeled" else ()
    for name in strong_names:
        # A decoder of its own per view: its own flip/crop draws, and no in-place op of one view
        # writing into a buffer another view reads (what a shared decoder node would cause).
        strong = _image_ops(mode, True, size, pad, device=device)
        pipelines[name] = PipelineSpec("image", decoder=strong[0], transforms=strong[1:])
    order = OrderOption.RANDOM if train else OrderOption.SEQUENTIAL
    if sampler is not None:
        share = sampler.batch // sampler.world
        per_epoch = max(MIN_BATCHES_PER_EPOCH, -(-len(sampler.indices) // share))
        order, batch_size, indices = PassOrder(sampler, per_epoch), share, sampler.indices
        seed, distributed = sampler.seed, False
    return SeededLoader(path, batch_size=batch_size, num_workers=num_workers, order=order,
                        indices=None if indices is None else np.asarray(indices),
                        pipelines=pipelines, drop_last=train, seed=seed, distributed=distributed,
                        os_cache=True)
