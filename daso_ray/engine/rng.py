"""The torch random-number states a checkpoint carries, so a resumed run draws what an
uninterrupted one would have drawn: the CPU generator's, and the CUDA device's when training there.
(The augmentation and sampling generators travel with the data state.)
"""

from __future__ import annotations

import torch

from daso_ray.data.augment import cpu_rng_state


def rng_state(device: torch.device) -> dict:
    """``{"torch": CPU state[, "cuda": state of ``device``]}`` as byte tensors."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore :func:`rng_state`'s output (from any device: states go back as CPU bytes)."""
    torch.set_rng_state(cpu_rng_state(state["torch"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(cpu_rng_state(state["cuda"]), device)
