"""One benchmark runner: every id side by side in one run, written to benchmarks/results/latest.json.

    python -m benchmarks.run [--quick] [--device cpu|cuda] [--only P1,P6q]
    python -m benchmarks.run --gather DIR [--device cuda]   # benchmarks/gpu_check.sh's table

Each benchmark runs in its own process (FFCV changes torch's thread count on import; Ray starts
its own local cluster) and writes its JSON; this runner gathers them into one object mapping each
id to ``{"value", "unit", "goal", "goal_dir", "met", "device", "detail"}`` and prints the table
(:mod:`benchmarks.tables`). ``--device`` is where P3, P5 and P8 run (only there: ``--device cuda``
does not time the CPU). The search benchmarks (P6q, P7, U1, A3) run on the CPU. P6q compares, at
equal trial-iterations on one digits-LT scenario, ASHA+TPE, random and grid: per strategy the
recommended params, held-out test mean ± s.e., gain over the baseline with its 95% CI and the
compute it needed (benchmarks/search.py); U1 is in benchmarks/utilization.py, A3 in
benchmarks/verify.py.

| id | what | goal |
|----|------|------|
| P1 | FFCV loader / torch DataLoader, same weak augmentation (img/s ratio) | >= 3 |
| P2 | batched strong augmentation / per-sample torchvision v2 in workers | >= 2 CPU, >= 10 GPU |
| P3 | DASO train iterations/s (WRN-28-2, B=64, mu=2); FixMatch beside it | >= 0.9 x FixMatch |
| P5 | aggregate it/s of 4 trials packed on one GPU / 1 trial (GPU only) | >= 2.5 |
| P6q | held-out test top-1: ASHA+TPE's recommended config - the better of random's, grid's (points) | none |
| P7 | trial start -> first report, single and ddp modes (s) | <= 5 / <= 20 |
| U1 | utilization of 8 declared CPUs: 3 studies at once / one after another (x) | >= 2 |
| W1 | digits search trial-iterations without / with shared warm-ups (x; wall beside it) | none |
| A3 | digits search + verify, 5 held-out seeds: mean gain of winners over baseline (points) | >= 1, CI > 0 |
| P8 | CIFAR-10-LT DASO run, 250k iterations + 500 evaluations, from the whole loop (h; CUDA) | <= 1.5 |

``--quick`` (CPU, CI-sized) shrinks every benchmark: 4k images for P1/P2, two timed rounds for P3,
a 2x2 grid of 40-iteration trials and 2 held-out seeds for P6q, 3 x 2 trials of 30 iterations for
U1, the ``--smoke`` search and verify with 2 held-out seeds for A3. The quick P6q and A3 are checks
of their paths (tiny budgets), not measurements: their JSON says ``smoke``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.tables import (  # STAGES, gather, gpu_table: also benchmarks.run's API for the tests
    STAGES,  # noqa: F401
    entry,
    gather,
    gpu_table,
    p3,
    p8,
    table,
)

REPO = Path(__file__).resolve().parents[1]


def _run(module: str, args: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *args, "--out", str(out)]
    print(f"$ {' '.join(cmd[1:])}", flush=True)
    t0 = time.time()
    res = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True)
    if res.returncode != 0:
        print(res.stdout[-2000:] + res.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"benchmarks.{module} failed (exit {res.returncode})")
    print(res.stdout.rstrip() + f"\n  ({time.time() - t0:.0f} s)\n", flush=True)
    return json.loads(out.read_text())


def loaders(tmp: Path, quick: bool, device: str, ids: list[str]) -> dict:
    r = _run("loaders", ["--n", "4000" if quick else "20000", "--epochs", "2" if quick else "3"],
             tmp / "loaders.json")
    return {pid: entry(r[pid]["value"], "x", r[pid]["goal"], "cpu",
                       {"what": r[pid]["detail"], "configs": r["configs"], "machine": r["machine"]})
            for pid in ("P1", "P2")}


def step(tmp: Path, quick: bool, device: str, ids: list[str]) -> dict:
    args = ["--device", device, "--iters", "2" if quick else ("20" if device == "cuda" else "5"),
            "--rounds", "2" if quick else "3"]
    return {"P3": p3(_run("step", args, tmp / "step.json")["rows"], device)}


def trainer_loop(tmp: Path, quick: bool, device: str, ids: list[str]) -> dict:
    if device != "cuda":
        return {"P8": entry(None, "h", 1.5, device, {"skipped": "CUDA only: run with --device cuda"},
                            at_least=False)}
    args = ["--device", device, "--loaders", "torch,ffcv",  # ffcv only where it is installed
            *(["--quick"] if quick else ["--period", "100", "--workers", "4"])]
    return {"P8": p8(_run("trainer_loop", args, tmp / "loop.json"), device)}


def pack(tmp: Path, quick: bool, device: str, ids: list[str]) -> dict:
    if device != "cuda":
        return {"P5": entry(None, "x", 2.5, device, {"skipped": "GPU only: run with --device cuda"})}
    r = _run("pack", ["--trials", "4", "--seconds", "5" if quick else "10"], tmp / "pack.json")
    return {"P5": entry(r["ratio"], "x", 2.5, "cuda", r)}


def search(tmp: Path, quick: bool, device: str, ids: list[str]) -> dict:
    """P6q, P7 (single, ddp), U1 and W1: benchmarks/search.py (its own local Ray clusters)."""
    mine = [i for i in ("P6q", "P7", "U1", "W1") if i in ids]
    r = _run("search", ["--ids", ",".join(mine), *(["--quick"] if quick else [])], tmp / "search.json")
    goals = {"P6q": (None, True), "P7_single": (5.0, False), "P7_ddp": (20.0, False), "U1": (2.0, True),
             "W1": (None, True)}
    return {k: entry(r[k]["value"], r[k]["unit"], goal, "cpu", r[k]["detail"], at_least)
            for k, (goal, at_least) in goals.items() if k in r}


def verify(tmp: Path, quick: bool, device: str, ids: list[str]) -> dict:
    """A3: benchmarks/verify.py (the shipped digits search, then verify on held-out seeds)."""
    r = _run("verify", ["--quick"] if quick else [], tmp / "verify.json")["A3"]
    e = entry(r["value"], r["unit"], r["goal"], "cpu", r["detail"])
    return {"A3": {**e, "met": r["met"]}}  # the goal also needs the interval above 0


SECTIONS = {"P1": loaders, "P2": loaders, "P3": step, "P5": pack, "P6q": search, "P7": search,
            "U1": search, "W1": search, "A3": verify, "P8": trainer_loop}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized budgets (CI)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--only", help=f"comma-separated ids ({','.join(SECTIONS)})")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "latest.json")
    p.add_argument("--gather", type=Path, metavar="DIR", help="gpu_check.sh: table + DIR/gpu_check.json")
    p.add_argument("--quiet", action="store_true", help="with --gather: write the JSON only")
    args = p.parse_args(argv)
    if args.gather:
        res = gather(args.gather, args.device)
        if not args.quiet:
            print(gpu_table(res["rows"]))
        return 0
    wanted = args.only.split(",") if args.only else list(SECTIONS)
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        p.error(f"--only: unknown id(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    t0 = time.time()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_") as d:
        for fn in dict.fromkeys(SECTIONS[w] for w in wanted):  # each section once, in order
            results.update(fn(Path(d), args.quick, args.device, wanted))
    print(table(results))
    meta = {"machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}",
            "quick": args.quick, "device": args.device, "wall_s": round(time.time() - t0, 1),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, args.out)
    args.out.with_name(args.out.stem + "_run.json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {args.out} ({meta['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
