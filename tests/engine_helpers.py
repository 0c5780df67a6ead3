"""Shared builders for the engine/algorithm tests: tiny real runs on the prepared digits data."""

from __future__ import annotations

import torch

from daso_ray.config import from_dict


def tiny_config(root, name: str, out, **sections) -> object:
    """A few-second CPU config on digits-LT (WRN-10-1 at 16 px, B = 8, mu = 2)."""
    raw = {
        "data": {"dataset": "digits", "root": str(root), "loader": "torch", "n_max_l": 20,
                 "n_max_u": 60, "imb_ratio_l": 5, "imb_ratio_u": 5, "num_valid": 50,
                 "batch_size": 8, "mu": 2, "num_workers": 1, "image_size": 16},
        "model": {"arch": "wrn10_1", "ema_decay": 0.9},
        "algorithm": {"name": name},
        "run": {"iterations": 8, "eval_period": 2, "checkpoint_period": 4, "median_last": 3,
                "device": "cpu", "out_dir": str(out)},
    }
    for section, values in sections.items():
        for k, v in values.items():
            if isinstance(v, dict):
                raw.setdefault(section, {}).setdefault(k, {}).update(v)
            else:
                raw.setdefault(section, {})[k] = v
    return from_dict(raw)


def train(cfg, run_dir, stop_after: int | None = None, resume: bool = False):
    """Run a Trainer (optionally only ``stop_after`` iterations); return it."""
    from daso_ray.engine.loop import Trainer

    trainer = Trainer(cfg, run_dir)
    if resume:
        trainer.resume(run_dir)
    if stop_after is not None:
        trainer.cfg = trainer.cfg.model_copy(deep=True)
        trainer.cfg.run.iterations = stop_after  # stops early; schedule keeps the full T_max
    trainer.fit()
    return trainer


def same_tensors(a: dict, b: dict) -> list[str]:
    """Names whose tensors differ (bit for bit) between two state dicts."""
    return [k for k in a if not torch.equal(a[k], b[k])]
