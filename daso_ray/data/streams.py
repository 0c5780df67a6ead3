"""One face for the two data backends, chosen once per run by ``data.loader``.

A backend reads a prepared folder and hands over uint8 images as its pipeline leaves them:
:class:`~daso_ray.data.torch_streams.TorchStreams` (torch DataLoaders over the Arrow stores;
runs everywhere) or :class:`~daso_ray.data.ffcv_streams.FfcvStreams` (FFCV over the ``.beton``
files). :class:`~daso_ray.data.loaders.Views` turns those into training batches, the same way
for both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import numpy as np
import torch

from daso_ray.config import DataConfig
from daso_ray.data.augment import Augmenter
from daso_ray.data.ffcv_io import ffcv_available
from daso_ray.data.loaders import PassSampler
from daso_ray.data.store import Stores
from daso_ray.data.torch_streams import TorchStreams
from daso_ray.errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Streams(Protocol):
    """What a data backend serves. Images are uint8 [n, 3, H, W] (H = W = ``image_size`` for
    JPEG sets; the stored side for raw-pixel ones); labels and indices are integer [n]; indices
    are rows of the split's file. Train streams are endless and advance ``sampler.consumed`` by
    one as each batch is handed out, so a checkpoint records what training saw."""

    def crop(self, augmenter: Augmenter) -> Callable[[torch.Tensor], torch.Tensor]:
        """The weak flip + crop still to draw on the device, per train view: the augmenter's
        (the views left the backend whole) or the identity (its pipeline drew them)."""
        ...

    def labeled(self, sampler: PassSampler, split: str) -> Iterator[Batch]:
        """``(x, y, idx)`` for each of ``sampler``'s batches of ``split``."""
        ...

    def unlabeled(self, sampler: PassSampler, split: str,
                  views: int) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        """``(images, idx)``: a list of ``views`` images of the same samples (the weak view's,
        then one per strong view), and no label (none may reach training). Each view gets its
        own flip + crop, drawn by the backend or by :meth:`crop`."""
        ...

    def eval(self, split: str, rows: np.ndarray, batch: int) -> Iterable[Batch]:
        """``(x, y, idx)`` of ``rows`` in order, ``batch`` at a time, last partial batch kept,
        not augmented (JPEG images centre-cropped to ``image_size``)."""
        ...


def open_streams(data: DataConfig, stores: Stores, mode: str, pad: int, device: torch.device) -> Streams:
    """The backend ``data.loader`` names, for a folder of ``mode`` (``raw`` or ``jpeg``);
    ``pad``: the reflect padding (px) of the train views' crops where the backend draws them."""
    if data.loader == "ffcv":
        return _ffcv_streams(data, stores, mode, pad, device)
    return TorchStreams(stores, data, mode, device)


def _ffcv_streams(data: DataConfig, stores: Stores, mode: str, pad: int, device: torch.device):
    threads = torch.get_num_threads()  # first: importing ffcv lowers it (FfcvStreams restores it)
    if not ffcv_available():
        torch.set_num_threads(threads)
        raise UserError("data.loader: ffcv is not installed here; run `make setup` or set "
                        "data.loader: torch")
    from daso_ray.data.ffcv_streams import FfcvStreams  # imports ffcv: only once it is chosen

    return FfcvStreams(stores.root, data, mode, pad, device, threads)
