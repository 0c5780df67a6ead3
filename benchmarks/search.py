"""Search benchmarks on digits-LT (reversed scenario: N_1 10, M_1 110, gamma 10), on local Ray clusters:
P6q and P7 here, U1 (cluster utilization) in :mod:`benchmarks.utilization`.

P6q: the quality of what a search strategy recommends at equal compute. On one scenario, three
searches over DASO's (t_proto, lambda_align[, dist_update_period]), each with the baseline (the base
config's values) as its first trial: ASHA + TPE; the random sampler without ASHA; the grid sampler
over the same ranges cut into cells (the cells' centres, log-spaced where the domain is log; the
centre nearest the baseline's value replaced by it, since a choice domain must hold it). Grid and
random train G trials of T iterations (G = the grid's size); ASHA + TPE trains round(4G/3) trials
(grace T/2, reduction 2: on average ~3/4 of T each), so all three spend about G * T trial-iterations
(the figure spent is reported; the baseline trial carries no grid id, so the grid sampler trains
G - 1 grid points beside it and may repeat the baseline's: distinct configs are counted). Then
``python -m daso_ray.verify`` trains each search's recommendation (its best finished trial) and the
baseline at the same budget on the same held-out seeds (100, 101, ..; never the search's seeds 0..),
so each strategy gets: recommended params, held-out test top-1 (``eval/top1_median``, 300 test
images: one image = 0.33 points) mean ± s.e. over seeds, the paired gain over the baseline with its
95% t interval, the trial-iterations spent, and the compute (trial-iterations summed over trials in
timestamp order) at which a finished trial first reached, on the validation objective, the best
validation objective among the strategies' recommendations (only the strategy holding it reaches it;
"to within 1 point" is reported too). The baseline's runs are trained once and copied into the other
searches' verify folders. All three studies share one sampler seed: TPE's random start-up trials
(max(3, N/4), the baseline first) are the random sampler's first draws, so the strategies differ by
what follows (common random numbers: less noise in the comparison, not in each figure; in --quick
the two may recommend the same trial). Value: ASHA+TPE's test mean - the better of random's and
grid's (points); no goal: with 5 held-out seeds the intervals are ±1-3 points, so read the
intervals, not the sign of one run. The validation hold-out is 200 images (one image = 0.5
points), 2 seeds 0-1 per trial.

W1 (:mod:`benchmarks.warmup_share`): the shipped digits search with and without shared warm-ups:
compute (trial-iterations) and wall time of each, and whether their leaderboards are identical.

P7: seconds from a trial's start to its first report (Tune's ``time_total_s`` of the first result:
trainable set-up, data, model, first evaluation window of 10 iterations), for ``single`` trials and
``ddp`` trials (2 CPU Ray Train workers: controller + worker group + process group).

Every search and verify is its own process (the product's commands) joining a cluster this process
holds. The 2 CPUs are shared with other work on the machine: wall times are that machine's.

    python -m benchmarks.search [--quick] [--ids P6q,P7,U1,W1] [--out benchmarks/results/search.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from pathlib import Path

from benchmarks.search_util import (
    REPO,
    ci_text,
    compute_to_reach,
    compute_trace,
    digits_spec,
    ensure_digits,
    local_cluster,
    mean_se,
    num,
    search,
    share_baseline,
    study_result,
    trial_iterations,
    verify,
    verify_available,
)
from benchmarks.utilization import format_u1, u1
from benchmarks.warmup_share import format_w1, w1

SPACE = {"algorithm.daso.t_proto": {"type": "float", "low": 0.02, "high": 1.0, "log": True},
         "algorithm.daso.lambda_align": {"type": "float", "low": 0.05, "high": 2.0, "log": True}}
CHOICE = {"algorithm.daso.dist_update_period": {"type": "choice", "values": [10, 50]}}
# Full: 3 x 3 x 2 = 18-point grid, 500 iterations, 2 seeds per trial, 5 held-out seeds (~40 min on
# 2 cores). Quick: a 2 x 2 grid of 40-iteration trials, 1 seed, 2 held-out seeds (a path check).
SIZES = {False: {"iters": 500, "period": 50, "pretrain": 150, "points": 3, "seeds": 2, "held_out": 5},
         True: {"iters": 40, "period": 10, "pretrain": 10, "points": 2, "seeds": 1, "held_out": 2}}
STUDY = "reversed"


def base_values(keys) -> dict:
    """The base config's values of ``keys`` (the baseline trial's parameters)."""
    from daso_ray.config import read_yaml, to_dict, validate

    raw = to_dict(validate(read_yaml(REPO / "configs" / "digits_lt_daso.yaml")))
    out = {}
    for key in keys:
        node = raw
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


def grid_of(params: dict, k: int, keep: dict) -> dict:
    """The params as choices: a numeric domain cut into k cells, each cell's centre (log-spaced
    where ``log``), the centre nearest to ``keep[key]`` (the baseline's value) replaced by it: the
    baseline trial, every study's first, must be a point of a choice domain."""
    out = {}
    for key, p in params.items():
        if p["type"] == "choice":
            out[key] = p
            continue
        f, inv = (math.log, math.exp) if p.get("log") else (float, float)
        lo, hi = f(p["low"]), f(p["high"])
        vals = [inv(lo + (hi - lo) * (i + 0.5) / k) for i in range(k)]
        near = min(range(k), key=lambda i: abs(f(vals[i]) - f(keep[key])))
        vals[near] = keep[key]
        cast = (lambda v: int(round(v))) if p["type"] == "int" else (lambda v: round(v, 4))
        out[key] = {"type": "choice", "values": sorted({cast(v) for v in vals})}
    return out


def strategy_specs(storage: Path, quick: bool) -> dict[str, dict]:
    s = SIZES[quick]
    space = SPACE if quick else {**SPACE, **CHOICE}
    grid = grid_of(space, s["points"], base_values(space))
    g = math.prod(len(p["values"]) for p in grid.values())
    common = {"set": {"run.eval_period": s["period"], "run.checkpoint_period": 2 * s["period"],
                      "algorithm.daso.pretrain_iters": s["pretrain"], "run.median_last": 2 if quick else 3}}
    budget = {"seeds": s["seeds"], "max_concurrent": 2}
    specs = {"asha_tpe": digits_spec("p6q_asha_tpe", storage, s["iters"], space, **common, budget={
                 **budget, "num_samples": round(4 * (g + 1) / 3),
                 "asha": {"grace": s["iters"] // 2, "reduction": 2}}),
             "random": digits_spec("p6q_random", storage, s["iters"], space, sampler="random",
                                   **common, budget={**budget, "num_samples": g + 1}),
             "grid": digits_spec("p6q_grid", storage, s["iters"], grid, sampler="grid", **common,
                                 budget={**budget, "num_samples": g + 1})}  # baseline + grid
    if not quick:  # dist_update_period is searched: the baseline keeps the base config's 50
        for spec in specs.values():
            spec["set"].pop("algorithm.daso.dist_update_period")
    return specs


def p6q(tmp: Path, quick: bool, address: str) -> dict:
    from daso_ray.study.leaderboard import leaderboard, read_trials

    s, specs = SIZES[quick], strategy_specs(tmp / "runs", quick)
    runs, walls, reports = {}, {}, {}
    for name, spec in specs.items():
        runs[name], walls[name] = search(spec, tmp, address)
    first = None
    for name, run_dir in runs.items():
        shared = share_baseline(runs[first], run_dir) if first else 0
        reports[name], wall = verify(run_dir, s["held_out"], address=address)
        walls[name] = {"search_s": round(walls[name], 1), "verify_s": round(wall, 1),
                       "baseline_runs_reused": shared}
        first = first or name
    entries = {n: r.get("studies", {}).get(STUDY, {}) for n, r in reports.items()}
    base_vals = next((study_result(e)["baseline"] for e in entries.values()
                      if study_result(e)["baseline"]), None)
    rows: dict[str, dict] = {}
    for name, run_dir in runs.items():
        r = study_result(entries[name], base_vals)
        finished = leaderboard(run_dir).get(STUDY, {}).get("finished", [])
        best = finished[0] if finished else None
        test_mean, test_se = mean_se(r["winner"])
        rows[name] = {"recommended": r["winner_params"] or (best and best["params"]),
                      "trial_id": r["winner_trial"] or (best and best["trial_id"]),
                      "is_baseline": r["winner_is_baseline"],
                      "valid_objective": best["last"].get("objective") if best else None,
                      "test_mean": test_mean, "test_se": test_se, "test_values": r["winner"],
                      "gain": r["gain"], "gain_se": r["stderr"], "ci": r["ci"],
                      "verdict": r["verdict"], "trials": len(list((run_dir / STUDY).glob("*/result.json"))),
                      "finished": len(finished), "distinct_configs": len(
                          {json.dumps(t["params"], sort_keys=True) for t in read_trials(run_dir / STUDY)}),
                      "trial_iterations": trial_iterations(run_dir / STUDY),
                      "trace": compute_trace(run_dir / STUDY, s["iters"]), **walls[name]}
    valid = [v["valid_objective"] for v in rows.values() if v["valid_objective"] is not None]
    target = max(valid) if valid else None
    for v in rows.values():
        trace = v.pop("trace")
        v["to_target"] = None if target is None else compute_to_reach(trace, target)
        v["to_within_1_point"] = None if target is None else compute_to_reach(trace, target - 1.0)
    b_mean, b_se = mean_se(base_vals)
    base_params = next((e.get("baseline", {}).get("params") for e in entries.values() if e), None)
    base_valid = next((t["last"].get("objective") for run_dir in runs.values()
                       for t in leaderboard(run_dir).get(STUDY, {}).get("finished", [])
                       if t["baseline"]), None)  # the baseline trial, first of every search
    rows["baseline"] = {"recommended": base_params, "valid_objective": base_valid,
                        "test_mean": b_mean, "test_se": b_se, "test_values": base_vals,
                        "gain": 0.0, "trial_iterations": 0}
    others = [rows[k]["test_mean"] for k in ("random", "grid")]
    ok = rows["asha_tpe"]["test_mean"] is not None and None not in others
    budget = math.prod(len(p["values"]) for p in specs["grid"]["params"].values()) * s["iters"]
    return {"value": rows["asha_tpe"]["test_mean"] - max(others) if ok else None,
            "unit": "points (smoke check)" if quick else "points",
            "goal": None, "detail": {
                "what": "held-out test top-1 of ASHA+TPE's recommendation - the better of random's "
                        "and grid's, at about equal trial-iterations", "scenario": STUDY,
                "iterations": s["iters"], "seeds_per_trial": s["seeds"],
                "held_out_seeds": (reports.get("asha_tpe") or {}).get("seeds"),
                "equal_compute_target": budget, "valid_target": target, "strategies": rows,
                "grid_values": {k: p["values"] for k, p in specs["grid"]["params"].items()},
                "smoke": quick}}


def format_p6q(r: dict) -> str:
    d = r["detail"]
    lines = [f"P6q {d['scenario']}: {d['iterations']} iterations per trial, target ~"
             f"{d['equal_compute_target']} trial-iterations each; test = held-out seeds "
             f"{d['held_out_seeds']}" + ("  [--quick: a path check, not a measurement]"
                                         if d["smoke"] else ""),
             f"{'strategy':<9} {'trials':>6} {'trial-it':>8} {'to best':>8} {'valid':>6} "
             f"{'test mean':>13} {'gain':>6} {'95% CI':<17} params"]
    for name, v in d["strategies"].items():
        params = "  ".join(f"{k.split('.')[-1]}={x:.3g}" if isinstance(x, float) else
                           f"{k.split('.')[-1]}={x}" for k, x in (v["recommended"] or {}).items())
        lines.append(f"{name:<9} {v.get('trials', 0):>6} {v['trial_iterations']:>8} "
                     f"{num(v.get('to_target'), 'd'):>8} {num(v.get('valid_objective')):>6} "
                     f"{num(v['test_mean']):>6} ± {num(v['test_se']):<4} {num(v['gain'], '+.2f'):>6} "
                     f"{ci_text(v.get('ci')):<17} {params}")
    lines.append(f"value: ASHA+TPE - best other = {num(r['value'], '+.2f')} points; 'to best': "
                 f"trial-iterations until a finished trial reached valid {num(d['valid_target'])}")
    return "\n".join(lines)


def p7(tmp: Path, mode: str, address: str) -> dict:
    from benchmarks.search_util import result_lines

    res = {"mode": mode, "cpu": 1} | ({"workers": 2} if mode == "ddp" else {})
    spec = digits_spec(f"p7_{mode}", tmp / "runs", 60, {"algorithm.daso.t_proto": {
        "type": "choice", "values": [0.05, 0.2]}}, resources=res, set={"run.eval_period": 10},
        budget={"num_samples": 2, "max_concurrent": 1 if mode == "ddp" else 2})
    run_dir, wall = search(spec, tmp, address)
    firsts = [lines[0]["time_total_s"] for lines in result_lines(run_dir / STUDY).values() if lines]
    return {"value": statistics.median(firsts), "unit": "s", "goal": None,
            "detail": {"mode": mode, "first_report_s": firsts, "search_wall_s": wall}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CI-sized: each a check of its path")
    p.add_argument("--ids", default="P6q,P7,U1,W1", help="which of P6q,P7,U1,W1 to run")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "search.json")
    args = p.parse_args(argv)
    ids = set(args.ids.split(","))
    out: dict = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def keep(key: str, fn) -> None:  # a later failure keeps what was measured
        out[key] = {**fn(), "device": "cpu"}
        args.out.write_text(json.dumps(out, indent=1))

    ensure_digits()
    with tempfile.TemporaryDirectory(prefix="bench_search_") as d:
        tmp = Path(d)
        if ids & {"P6q", "P7", "W1"}:
            with local_cluster(2) as addr:  # the machine's 2 cores, as a search here would have
                if "W1" in ids:
                    keep("W1", lambda: w1(tmp, args.quick, addr))
                if "P6q" in ids:
                    keep("P6q", lambda: p6q(tmp, args.quick, addr) if verify_available() else {
                        "value": None, "unit": "points", "goal": None,
                        "detail": {"skipped": "daso_ray.verify is not in this checkout"}})
                if "P7" in ids:
                    keep("P7_single", lambda: p7(tmp, "single", addr))
        if ids & {"U1", "P7"}:
            with local_cluster(8) as addr:  # U1's simulated cluster; ddp needs 2 + 0.01 CPUs
                if "U1" in ids:
                    keep("U1", lambda: u1(tmp, args.quick, addr))
                if "P7" in ids:
                    keep("P7_ddp", lambda: p7(tmp, "ddp", addr))
    if "strategies" in out.get("P6q", {}).get("detail", {}):
        print(format_p6q(out["P6q"]))
    if "U1" in out:
        print(format_u1(out["U1"]))
    if "W1" in out:
        print(format_w1(out["W1"]))
    print(f"{'id':<10} {'value':>10}  unit")
    for k, v in out.items():
        detail = {x: y for x, y in v["detail"].items() if x != "strategies"}
        print(f"{k:<10} {num(v['value'], '10.3f')}  {v['unit']}  {json.dumps(detail)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
