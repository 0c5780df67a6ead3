"""One benchmark runner: P1-P7 side by side in one run, written to benchmarks/results/latest.json.

    python -m benchmarks.run [--quick] [--device cpu|cuda] [--only P1,P6]

Each benchmark runs in its own process (FFCV changes torch's thread count on import; Ray starts
its own local cluster) and writes its JSON; this runner gathers them into one object mapping each
id to ``{"value", "unit", "goal", "goal_dir", "met", "device", "detail"}`` and prints the table.

| id | what | goal |
|----|------|------|
| P1 | FFCV loader / torch DataLoader, same weak augmentation (img/s ratio) | >= 3 |
| P2 | batched strong augmentation / per-sample torchvision v2 in workers | >= 2 CPU, >= 10 GPU |
| P3 | DASO train iterations/s (WRN-28-2, B=64, mu=2); FixMatch beside it | >= 0.9 x FixMatch |
| P5 | aggregate it/s of 4 trials packed on one GPU / 1 trial (GPU only) | >= 2.5 |
| P6 | ASHA+TPE compute to reach best-of-grid / grid compute (digits-LT) | <= 0.25 |
| P7 | trial start -> first report, single and ddp modes (s) | <= 5 / <= 20 |
| P8 | full-size CIFAR-10-LT DASO run, 250k iterations, extrapolated (h; CUDA only) | <= 1.5 |

``--quick`` (CPU, under 5 minutes on 2 cores) shrinks every benchmark: 4k images for P1/P2, two
timed rounds for P3, a 2x2 grid of 120-iteration trials for P6.
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

REPO = Path(__file__).resolve().parents[1]
FULL_RUN_ITERS = 250_000


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


def entry(value, unit: str, goal: float | None, device: str, detail: dict, at_least: bool = True) -> dict:
    met = None if value is None or goal is None else (value >= goal if at_least else value <= goal)
    return {"value": value, "unit": unit, "goal": goal, "goal_dir": ">=" if at_least else "<=",
            "met": met, "device": device, "detail": detail}


def loaders(tmp: Path, quick: bool, device: str) -> dict:
    r = _run("loaders", ["--n", "4000" if quick else "20000", "--epochs", "2" if quick else "3"],
             tmp / "loaders.json")
    return {pid: entry(r[pid]["value"], "x", r[pid]["goal"], "cpu",
                       {"what": r[pid]["detail"], "configs": r["configs"], "machine": r["machine"]})
            for pid in ("P1", "P2")}


def step(tmp: Path, quick: bool, device: str) -> dict:
    args = ["--iters", "2" if quick else "5", "--rounds", "2" if quick else "3"]
    rows = _run("step", args, tmp / "step.json")["rows"]
    out = {}
    for dev in sorted({r["device"] for r in rows}):
        fm, da = (next(r for r in rows if r["device"] == dev and r["algorithm"] == a)
                  for a in ("fixmatch", "daso"))
        key = "P3" if dev == "cpu" else f"P3_{dev}"
        out[key] = entry(da["it_per_s"], "it/s", 0.9 * fm["it_per_s"], dev, {
            "daso_ms_per_it": da["ms_per_it"], "fixmatch_ms_per_it": fm["ms_per_it"],
            "fixmatch_it_per_s": fm["it_per_s"], "daso_over_fixmatch_time": da["ms_per_it"] /
            fm["ms_per_it"], "arch": da["arch"], "batch": da["batch"], "mu": da["mu"],
            "threads": da["threads"]})
        if dev == "cuda":  # P8: a full-size 250k-iteration run at the measured rate
            hours = FULL_RUN_ITERS / da["it_per_s"] / 3600
            out["P8"] = entry(hours, "h", 1.5, dev, {"iterations": FULL_RUN_ITERS,
                                                     "it_per_s": da["it_per_s"]}, at_least=False)
    return out


def pack(tmp: Path, quick: bool, device: str) -> dict:
    if device != "cuda":
        return {"P5": entry(None, "x", 2.5, device, {"skipped": "GPU only: run with --device cuda"})}
    r = _run("pack", ["--trials", "4", "--iters", "20" if quick else "50"], tmp / "pack.json")
    return {"P5": entry(r["ratio"], "x", 2.5, "cuda", r)}


def search(tmp: Path, quick: bool, device: str) -> dict:
    r = _run("search", ["--quick"] if quick else [], tmp / "search.json")
    goals = {"P7_single": 5.0, "P7_ddp": 20.0}
    out = {"P6": entry(r["P6"]["value"], r["P6"]["unit"], 0.25, "cpu", r["P6"]["detail"], False)}
    for k, goal in goals.items():
        out[k] = entry(r[k]["value"], "s", goal, "cpu", r[k]["detail"], at_least=False)
    return out


SECTIONS = {"P1": loaders, "P2": loaders, "P3": step, "P5": pack, "P6": search, "P7": search}


def table(results: dict) -> str:
    lines = [f"{'id':<10} {'value':>10} {'unit':<26} {'goal':>8} {'met':<5} device"]
    for k, v in results.items():
        value = "skipped" if v["value"] is None else f"{v['value']:.3f}"
        goal = "" if v["goal"] is None else f"{v['goal_dir']}{v['goal']:.3g}"
        met = {True: "yes", False: "NO", None: "-"}[v["met"]]
        lines.append(f"{k:<10} {value:>10} {v['unit']:<26} {goal:>8} {met:<5} {v['device']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized budgets (< 5 min on 2 cores)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--only", help="comma-separated ids (P1,P2,P3,P5,P6,P7)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "latest.json")
    args = p.parse_args(argv)
    wanted = args.only.split(",") if args.only else list(SECTIONS)
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        p.error(f"--only: unknown id(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    t0 = time.time()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_") as d:
        for fn in dict.fromkeys(SECTIONS[w] for w in wanted):  # each section once, in order
            results.update(fn(Path(d), args.quick, args.device))
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
