"""Training-step throughput: FixMatch vs DASO, WRN-28-2, B = 64, mu = 2 (320 images per step).

Times ``engine.loop.Stepper.train_step`` — the production iteration (algorithm loss, backward, SGD,
LR step, EMA; DASO adds the EMA-encoder queue push, prototypes and the alignment loss) — on
synthetic normalised batches, so data loading is excluded (benchmarks/loaders.py covers it). DASO
is timed after its pre-train phase (t >= P) so the full DASO path runs. CPU always, CUDA when present
(bf16 autocast + channels_last, as the trainer runs it).

    python -m benchmarks.step --iters 3 --rounds 3 --warmup 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from daso_ray.algorithms import Context
from daso_ray.config import from_dict
from daso_ray.engine.loop import Stepper


def make_batch(b: int, mu: int, k: int, size: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    img = lambda n: torch.randn(n, 3, size, size, generator=g).to(device)  # noqa: E731
    return {"x": img(b), "y": torch.randint(0, k, (b,), generator=g).to(device),
            "x_w": img(mu * b), "x_s": img(mu * b)}


def build(algo: str, device: str, args):
    cfg = from_dict({"algorithm": {"name": algo, "daso": {"pretrain_iters": 100}},
                     "model": {"arch": args.arch},
                     "data": {"batch_size": args.batch, "mu": args.mu},
                     "run": {"device": device, "iterations": 10**6, "compile": args.compile}})
    dev = torch.device(device)
    ctx = Context(10, torch.tensor([500, 299, 179, 107, 64, 38, 23, 13, 8, 5]), 10**6, dev)
    torch.manual_seed(0)
    stepper = Stepper(cfg, ctx)
    batch = make_batch(args.batch, args.mu, 10, 32, dev)
    t0 = 1000  # past P = 100 for DASO, so its whole path (q_w, blend, L_align) runs
    for t in range(args.warmup):
        stepper.train_step(batch, t0 + t)
    return stepper, batch, t0 + args.warmup


def time_round(stepper, batch, t0: int, iters: int, device: str) -> float:
    """Seconds per iteration over ``iters`` iterations."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for t in range(iters):
        stepper.train_step(batch, t0 + t)
    sync()
    return (time.perf_counter() - start) / iters


def measure(device: str, args) -> list[dict]:
    """Rounds alternate FixMatch and DASO so machine noise hits both alike; median per algorithm."""
    runs = {a: build(a, device, args) for a in ("fixmatch", "daso")}
    times = {a: [] for a in runs}
    for r in range(args.rounds):
        for a, (stepper, batch, t0) in runs.items():
            times[a].append(time_round(stepper, batch, t0 + r * args.iters, args.iters, device))
    images = args.batch * (1 + 2 * args.mu)
    rows = []
    for a, ts in times.items():
        sec = statistics.median(ts)
        rows.append({"algorithm": a, "device": device, "arch": args.arch, "batch": args.batch,
                     "mu": args.mu, "threads": torch.get_num_threads(), "it_per_s": 1 / sec,
                     "img_per_s": images / sec, "ms_per_it": 1000 * sec,
                     "rounds_ms": [round(1000 * t, 1) for t in ts]})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=3, help="iterations per timed round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--mu", type=int, default=2)
    p.add_argument("--arch", default="wrn28_2")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/step.json"))
    args = p.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [r for d in devices for r in measure(d, args)]
    print(f"{'device':6s} {'algorithm':9s} {'ms/it':>9s} {'it/s':>8s} {'img/s':>9s}")
    for r in rows:
        print(f"{r['device']:6s} {r['algorithm']:9s} {r['ms_per_it']:9.1f} {r['it_per_s']:8.2f} "
              f"{r['img_per_s']:9.0f}")
    for d in devices:
        fm, da = (next(r for r in rows if r["device"] == d and r["algorithm"] == a)
                  for a in ("fixmatch", "daso"))
        print(f"{d}: DASO / FixMatch time per iteration = {da['ms_per_it'] / fm['ms_per_it']:.3f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
