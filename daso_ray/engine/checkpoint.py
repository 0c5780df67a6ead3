"""Checkpoints: one directory per saved step, written atomically, the newest ``keep`` retained.

``<run_dir>/checkpoints/step_00001000/state.pt`` holds everything that changes a result (model,
EMA, optimizer, scheduler, algorithm state, data-stream positions, every RNG state, the step and the
metric history; ytaek-oh/daso checkpoints none of the DASO state, so a resume past the
pre-training phase starts from an empty queue). A directory appears only once complete (temp dir +
rename), so a crash mid-write never leaves a half checkpoint and the previous one survives.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import torch

from daso_ray.errors import UserError

STATE = "state.pt"


def save(run_dir: Path, step: int, state: dict, keep: int = 2) -> Path:
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with open(tmp / STATE, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename publishes it
    except OSError as e:  # disk full, quota, I/O error: the previous checkpoint stays the newest
        shutil.rmtree(tmp, ignore_errors=True)
        prev = latest(run_dir)
        raise UserError(f"checkpoint write failed in {root} ({e.strerror or e}) — free disk space "
                        f"there, then --resume {run_dir} continues from "
                        f"{prev.name if prev else 'the start'}") from e
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(run_dir: Path) -> list[Path]:
    """A run's complete checkpoint directories, oldest first."""
    return sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*") if (p / STATE).is_file())


def latest(run_dir: Path) -> Path | None:
    """Newest complete checkpoint directory of a run, or None."""
    found = complete(run_dir)
    return found[-1] if found else None


def load(path: Path) -> dict:
    """Load ``state.pt`` from a checkpoint dir (or a run dir: its newest checkpoint), on the CPU.

    Always the CPU, whatever device the run trains on: each part's ``load_state_dict`` copies
    its tensors to where they live, and RNG states must stay CPU byte tensors
    (``Generator.set_state`` rejects a CUDA tensor, which ``map_location="cuda"`` would give).
    ``weights_only=True``: a checkpoint handed to us is data, never code.
    """
    path = Path(path)
    if (path / "checkpoints").is_dir():
        found = complete(path)
        if not found:
            raise UserError(f"--resume: {path} has no complete checkpoint yet — start a new run")
        for older in reversed(found[1:]):  # an unreadable newest one falls back to the one before
            try:
                return _read(older / STATE)
            except UserError as e:
                print(f"note: {e}; trying the previous checkpoint")
        path = found[0]
    file = path / STATE
    if not file.is_file():
        raise UserError(f"--resume: {file} not found — pass a run directory or a checkpoint directory")
    return _read(file)


def _read(file: Path) -> dict:
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{file}: not a readable checkpoint ({first[:120]}) — it is corrupt or "
                        "truncated; resume from an earlier checkpoint directory") from e
