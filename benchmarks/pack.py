"""P5: aggregate training throughput of N trials packed on one GPU over one trial alone.

Each "trial" is a process running the production DASO step (benchmarks/step.py: WRN-28-2, B=64,
mu=2, bf16 on CUDA) — what a single-mode trial with ``resources.gpu: 1/N`` runs. The N processes
warm up, wait for each other at a file barrier, then all time the same wall-clock window of
``--seconds``, so the sum of their iteration rates is the GPU's aggregate throughput under packing
(a fixed iteration count would let the fastest finish early and the others speed up alone).

    python -m benchmarks.pack --trials 4 --seconds 10 [--device cuda] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def wait_for_all(barrier: Path, n: int, timeout: float = 300.0) -> None:
    """Mark this process ready, then return once ``n`` processes are (polling a folder)."""
    (barrier / f"ready_{os.getpid()}").touch()
    deadline = time.time() + timeout
    while len(list(barrier.iterdir())) < n:
        if time.time() > deadline:
            raise SystemExit(f"pack: only {len(list(barrier.iterdir()))} of {n} trials got ready")
        time.sleep(0.01)


def one(args) -> dict:
    from benchmarks.step import build

    torch.set_num_threads(args.threads)
    ns = argparse.Namespace(arch=args.arch, batch=args.batch, mu=2, warmup=3)
    stepper, batch, t0 = build("daso", args.device, ns)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    sync()
    wait_for_all(Path(args.barrier), args.n)
    start = time.perf_counter()
    deadline, n = start + args.seconds, 0
    while time.perf_counter() < deadline:  # the host runs ahead; the sync below settles the count
        stepper.train_step(batch, t0 + n)
        n += 1
    sync()
    return {"it_per_s": n / (time.perf_counter() - start), "iterations": n}


def launch(n: int, args) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="pack_") as barrier:
        cmd = [sys.executable, "-m", "benchmarks.pack", "--one", "--device", args.device,
               "--seconds", str(args.seconds), "--threads", str(args.threads), "--arch", args.arch,
               "--batch", str(args.batch), "--barrier", barrier, "--n", str(n)]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a packed trial failed (exit codes {[p.returncode for p in procs]})")
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0, help="timed window per launch")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per trial process")
    p.add_argument("--arch", default="wrn28_2")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/pack.json"))
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--barrier", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args)))
        return 0
    alone = launch(1, args)[0]["it_per_s"]
    packed = [r["it_per_s"] for r in launch(args.trials, args)]
    res = {"device": args.device, "trials": args.trials, "arch": args.arch, "batch": args.batch,
           "seconds": args.seconds, "single_it_per_s": alone, "packed_it_per_s": packed,
           "aggregate_it_per_s": sum(packed), "ratio": sum(packed) / alone}
    print(f"1 trial: {alone:.2f} it/s; {args.trials} packed: {' + '.join(f'{v:.2f}' for v in packed)}"
          f" = {sum(packed):.2f} it/s; P5 = {res['ratio']:.2f}x (goal >= 2.5)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
