"""Search efficiency (P6) and trial start-up latency (P7) on digits-LT, on a local Ray cluster.

P6: a full grid over DASO's (t_proto, lambda_align, dist_update_period) is trained to the budget;
then ASHA + TPE searches the same discrete space. P6 = trial-iterations ASHA+TPE had spent (summed
over all its trials, up to that moment) when a finished trial first reached the grid's best
objective, divided by the grid's total trial-iterations. Not reached: the fraction of its whole
run, flagged ``reached: false``. Goal <= 0.25.

P7: seconds from a trial's start to its first report (Tune's ``time_total_s`` of the first
result: trainable set-up, data, model, first evaluation window of 10 iterations), for ``single``
trials and for ``ddp`` trials (2 CPU Ray Train workers: controller + worker group + process group).

    python -m benchmarks.search [--quick] [--out benchmarks/results/search.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "digits"
GRID = {"algorithm.daso.t_proto": [0.05, 0.2, 0.8], "algorithm.daso.lambda_align": [0.1, 0.5, 2.0],
        "algorithm.daso.dist_update_period": [10, 50]}


def ensure_digits() -> None:
    """The built-in digits data under data/digits (prepared once; no download)."""
    if not (DATA / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "daso_ray.prepare", "digits", "--out", str(DATA)],
                       check=True, cwd=REPO)


def _spec(name: str, storage: Path, iters: int, params: dict, **over) -> dict:
    spec = {"name": name, "base": str(REPO / "configs" / "digits_lt_daso.yaml"), "algorithm": "daso",
            "set": {"algorithm.daso.pretrain_iters": iters // 4, "run.median_last": 3,
                    "algorithm.daso.dist_update_period": 10,  # <= pretrain_iters at any budget
                    "run.eval_period": iters // 6, "run.checkpoint_period": iters // 3,
                    "data.root": str(DATA)},
            "params": {k: {"type": "choice", "values": v} for k, v in params.items()},
            "scenarios": [{"name": "reversed", "unlabeled": "reversed", "n1": 10, "m1": 120,
                           "gamma_l": 10, "gamma_u": 10}],
            "objective": {"type": "per_scenario", "metric": "valid/top1_median20"},
            "budget": {"num_samples": 1, "max_concurrent": 2, "iterations": iters},
            "storage": str(storage), "sampler_seed": 0}
    for k, v in over.items():
        spec[k] = {**spec[k], **v} if isinstance(v, dict) and k in spec else v
    return spec


def _search(spec: dict, tmp: Path, num_cpus: int = 2) -> tuple[Path, float]:
    file = tmp / f"{spec['name']}.yaml"
    file.write_text(yaml.safe_dump(spec, sort_keys=False))
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "daso_ray.search", str(file), "--num-cpus", str(num_cpus)],
                         cwd=REPO, capture_output=True, text=True, timeout=3600)
    if res.returncode != 0:
        raise SystemExit(f"search {spec['name']} failed:\n{res.stderr[-3000:]}")
    return Path(spec["storage"]) / spec["name"] / "reversed", time.time() - t0


def _results(study: Path) -> list[list[dict]]:
    return [[json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()]
            for f in sorted(study.glob("*/result.json"))]


def p6(tmp: Path, iters: int, grid: dict) -> dict:
    size = 1
    for v in grid.values():
        size *= len(v)
    g_study, g_wall = _search(_spec("grid", tmp / "runs", iters, grid, sampler="grid",
                                    budget={"num_samples": size}), tmp)
    g_runs = _results(g_study)
    best = max(r[-1]["objective"] for r in g_runs)
    grid_cost = sum(r[-1]["step"] for r in g_runs)
    a_study, a_wall = _search(_spec("asha", tmp / "runs", iters, grid, budget={
        "num_samples": size, "asha": {"grace": iters // 2, "reduction": 2}}), tmp)
    events = sorted((r["timestamp"], r["step"], r["objective"], i)
                    for i, run in enumerate(_results(a_study)) for r in run)
    spent: dict[int, int] = {}
    reached, near = None, None  # near: within 2 points (the valid set's noise is about that size)
    for _ts, step, obj, i in events:
        spent[i] = max(spent.get(i, 0), step)
        if reached is None and step == iters and obj >= best:
            reached = sum(spent.values())
        if near is None and step == iters and obj >= best - 2.0:
            near = sum(spent.values())
    total = sum(spent.values())
    cost = reached if reached is not None else total
    return {"value": cost / grid_cost, "unit": "fraction of grid compute", "goal": 0.25,
            "detail": {"grid_points": size, "grid_best": best, "grid_trial_iterations": grid_cost,
                       "asha_trial_iterations_to_best": reached, "asha_trial_iterations": total,
                       "reached": reached is not None,
                       "fraction_to_within_2_points": None if near is None else near / grid_cost,
                       "asha_best": max(
                           (r[-1]["objective"] for r in _results(a_study) if r[-1]["step"] == iters),
                           default=None), "grid_wall_s": g_wall, "asha_wall_s": a_wall,
                       "iterations": iters}}


def p7(tmp: Path, mode: str) -> dict:
    res = {"mode": mode, "cpu": 1} | ({"workers": 2} if mode == "ddp" else {})
    study, wall = _search(_spec(f"p7_{mode}", tmp / "runs", 60, {"algorithm.daso.t_proto": [0.05, 0.2]},
                                budget={"num_samples": 2, "max_concurrent": 1 if mode == "ddp" else 2},
                                resources=res, set={"run.eval_period": 10}), tmp,
                          # ddp: 2 workers x 1 CPU plus the driving trial actor's 0.01 CPU
                          num_cpus=3 if mode == "ddp" else 2)
    firsts = [run[0]["time_total_s"] for run in _results(study)]
    return {"value": statistics.median(firsts), "unit": "s", "goal": None,
            "detail": {"mode": mode, "first_report_s": firsts, "search_wall_s": wall}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a 2x2 grid of 120-iteration trials")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "search.json")
    args = p.parse_args()
    grid = dict(list(GRID.items())[:2]) if args.quick else GRID
    if args.quick:
        grid = {k: v[:2] for k, v in grid.items()}
    out: dict = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench_search_") as d:
        tmp = Path(d)
        ensure_digits()
        for key, fn in (("P6", lambda: p6(tmp, 120 if args.quick else 600, grid)),
                        ("P7_single", lambda: p7(tmp, "single")), ("P7_ddp", lambda: p7(tmp, "ddp"))):
            out[key] = {**fn(), "device": "cpu"}
            args.out.write_text(json.dumps(out, indent=1))  # a later failure keeps what was measured
    print(f"{'id':<10} {'value':>10}  unit")
    for k, v in out.items():
        print(f"{k:<10} {v['value']:>10.3f}  {v['unit']}  {json.dumps(v['detail'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
