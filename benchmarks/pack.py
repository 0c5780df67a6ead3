"""P5: aggregate training throughput of N trials packed on one GPU over one trial alone.

Each "trial" is a process running the production DASO step (benchmarks/step.py: WRN-28-2, B=64,
mu=2, bf16 on CUDA) — what a single-mode trial with ``resources.gpu: 1/N`` runs. The N processes
warm up, then all time the same wall-clock window (a shared start time), so the sum of their
iteration rates is the GPU's aggregate throughput under packing.

    python -m benchmarks.pack --trials 4 --iters 50 [--device cuda] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch


def one(args) -> dict:
    from benchmarks.step import build

    torch.set_num_threads(args.threads)
    ns = argparse.Namespace(arch="wrn28_2", batch=64, mu=2, compile=False, warmup=3)
    stepper, batch, t0 = build("daso", args.device, ns)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    sync()
    time.sleep(max(0.0, args.start_at - time.time()))  # every process times the same window
    start = time.perf_counter()
    for t in range(args.iters):
        stepper.train_step(batch, t0 + t)
    sync()
    return {"it_per_s": args.iters / (time.perf_counter() - start)}


def launch(n: int, args) -> list[dict]:
    start_at = time.time() + args.settle
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.pack", "--one", "--device", args.device,
                               "--iters", str(args.iters), "--threads", str(args.threads),
                               "--start-at", str(start_at)], stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("a packed trial failed")
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per trial process")
    p.add_argument("--settle", type=float, default=60.0, help="seconds allowed for start-up + warm-up")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/pack.json"))
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return 0
    alone = launch(1, args)[0]["it_per_s"]
    packed = [r["it_per_s"] for r in launch(args.trials, args)]
    res = {"device": args.device, "trials": args.trials, "single_it_per_s": alone,
           "packed_it_per_s": packed, "aggregate_it_per_s": sum(packed), "ratio": sum(packed) / alone}
    print(f"1 trial: {alone:.2f} it/s; {args.trials} packed: {' + '.join(f'{v:.2f}' for v in packed)}"
          f" = {sum(packed):.2f} it/s; P5 = {res['ratio']:.2f}x (goal >= 2.5)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
