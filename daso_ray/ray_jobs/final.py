"""Final training on Ray Train: one DDP run per seed (``python -m daso_ray.train --workers N``)."""

from __future__ import annotations

import json
from pathlib import Path

from daso_ray.config import Config, to_dict
from daso_ray.errors import UserError
from daso_ray.metrics import TEST_MEDIAN
from daso_ray.ray_jobs.cluster import connect
from daso_ray.ray_jobs.worker import fit_distributed


def train_seeds(cfgs: list[Config], out: Path, workers: int, gpu: bool, address: str | None) -> list:
    """Train each config (one per seed) on ``workers`` Ray Train workers; rank 0's final metrics
    of each seed (what its ``results.json`` holds) in seed order."""
    connect(address)
    out = Path(out).resolve()
    results = []
    for seed, cfg in enumerate(cfgs):
        run_dir = out / f"seed_{seed}"
        cpu = max(1, cfg.data.num_workers)
        res = fit_distributed(to_dict(cfg), str(run_dir), workers=workers, gpu=gpu, cpu=cpu,
                              name=f"seed_{seed}", storage=str(out / "_train"), max_failures=2)
        if res.error is not None:
            raise UserError(f"seed {seed}: Ray Train failed ({str(res.error).splitlines()[-1]}) — "
                            f"see {out / '_train'}")
        final = res.metrics or {}
        local = run_dir / "results.json"  # rank 0 wrote it, on this node for a local cluster
        results.append(json.loads(local.read_text()) if local.is_file() else {"final": final})
        print(f"seed {seed}: {TEST_MEDIAN} {final.get(TEST_MEDIAN, float('nan')):.2f}",
              flush=True)
    return results
