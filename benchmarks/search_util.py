"""Helpers of the search benchmarks (``benchmarks.search``: P6q, P7, U1; ``benchmarks.verify``: A3).

Everything goes through the product's own commands in fresh processes (``python -m
daso_ray.search``, ``python -m daso_ray.verify``) and reads what they leave on disk: the Tune trials
(``daso_ray.study.leaderboard``) and ``verify.json``. :func:`local_cluster` holds one local Ray
cluster for a series of runs, so each run joins it (``--address``) instead of paying Ray's start-up.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "digits"
LEVEL = 0.95
# digits-LT at M_1 = 110 leaves 20 validation images per class: data.num_valid 200, one image =
# 0.5 points = the search's default objective.min_resolution.
SCENARIOS = {n: {"name": n, "unlabeled": n, "n1": 10, "m1": 110, "gamma_l": 10,
                 **({} if n == "uniform" else {"gamma_u": 10})}
             for n in ("consistent", "uniform", "reversed")}


def ensure_digits() -> None:
    """The built-in digits data under data/digits (prepared once; no download)."""
    if not (DATA / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "daso_ray.prepare", "digits", "--out", str(DATA)],
                       check=True, cwd=REPO)


def verify_available() -> bool:
    """Whether ``python -m daso_ray.verify`` exists in this checkout."""
    return importlib.util.find_spec("daso_ray.verify") is not None


def digits_spec(name: str, storage: Path, iters: int, params: dict, scenarios=("reversed",),
                **over) -> dict:
    """A search file (as a dict) on digits-LT: ``params`` in the search-file format, one study per
    scenario, every iteration period scaled to ``iters``. ``over`` updates top-level keys (a dict
    value is merged into the default's)."""
    period = max(1, iters // 6)
    spec = {"name": name, "base": str(REPO / "configs" / "digits_lt_daso.yaml"), "algorithm": "daso",
            "set": {"algorithm.daso.pretrain_iters": max(10, iters // 4), "run.median_last": 3,
                    "algorithm.daso.dist_update_period": 10,  # <= pretrain_iters at any budget
                    "run.eval_period": period, "run.checkpoint_period": 2 * period,
                    "data.num_valid": 200, "data.root": str(DATA)},
            "params": params, "scenarios": [SCENARIOS[s] for s in scenarios],
            "objective": {"type": "per_scenario", "metric": "valid/top1_median"},
            "budget": {"num_samples": 1, "max_concurrent": 2, "iterations": iters},
            "storage": str(storage), "sampler_seed": 0}
    for k, v in over.items():
        spec[k] = {**spec[k], **v} if isinstance(v, dict) and isinstance(spec.get(k), dict) else v
    return spec


@contextlib.contextmanager
def local_cluster(num_cpus: int) -> Iterator[str]:
    """A local Ray cluster of ``num_cpus`` declared CPUs (dashboard on 127.0.0.1) held by this
    process while the block runs; yields its address for ``--address``. Shut down on exit."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback cluster of this process only
    ctx = ray.init(address="local", num_cpus=num_cpus, include_dashboard=True,
                   dashboard_host="127.0.0.1", log_to_driver=False)
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()


def run_module(module: str, args: list[str], timeout: float, what: str) -> tuple[str, float]:
    """``python -m module args`` from the repository root; (stdout, wall seconds). Exits with the
    tail of its output when it fails."""
    env = {**os.environ, "NUMBA_THREADING_LAYER": os.environ.get("NUMBA_THREADING_LAYER", "tbb"),
           "PYTHONPATH": str(REPO)}
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                         text=True, timeout=timeout, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{what}: python -m {module} {' '.join(args)} failed (exit "
                         f"{res.returncode}):\n{res.stdout[-1500:]}\n{res.stderr[-3000:]}")
    return res.stdout, time.time() - t0


def search(spec: dict | Path, tmp: Path, address: str | None = None, num_cpus: int | None = None,
           extra: tuple[str, ...] = (), timeout: float = 4 * 3600) -> tuple[Path, float]:
    """Run one search (a spec dict is written to ``tmp/<name>.yaml``); (its run dir, wall s).
    ``spec`` a path: run that file as it is, ``extra`` then names ``--name``/``--storage``."""
    if isinstance(spec, dict):
        file = tmp / f"{spec['name']}.yaml"
        file.write_text(yaml.safe_dump(spec, sort_keys=False))
        run_dir = Path(spec["storage"]) / spec["name"]
    else:
        file = spec
        opts = dict(zip(extra[::2], extra[1::2], strict=False))
        raw = yaml.safe_load(file.read_text())
        run_dir = Path(opts.get("--storage", raw.get("storage", "runs/search"))) / opts.get(
            "--name", raw["name"])
    run_dir = run_dir if run_dir.is_absolute() else REPO / run_dir
    args = [str(file), *extra, *(["--address", address] if address else []),
            *(["--num-cpus", str(num_cpus)] if num_cpus and not address else [])]
    _, wall = run_module("daso_ray.search", args, timeout, f"search {run_dir.name}")
    print(f"  search {run_dir.name}: {wall:.0f} s", flush=True)
    return run_dir, wall


def verify(run_dir: Path, seeds: int, smoke: bool = False, address: str | None = None,
           num_cpus: int | None = None, timeout: float = 4 * 3600) -> tuple[dict, float]:
    """``python -m daso_ray.verify RUN_DIR --seeds K``; (verify.json, wall seconds)."""
    args = [str(run_dir), "--seeds", str(seeds), *(["--smoke"] if smoke else []),
            *(["--address", address] if address else []),
            *(["--num-cpus", str(num_cpus)] if num_cpus and not address else [])]
    _, wall = run_module("daso_ray.verify", args, timeout, f"verify {run_dir.name}")
    print(f"  verify {run_dir.name}: {wall:.0f} s", flush=True)
    return json.loads((run_dir / "verify.json").read_text()), wall


def share_baseline(src_run: Path, dst_run: Path) -> int:
    """Copy the finished baseline runs of ``src_run``'s verification into ``dst_run``'s, so verify
    there reuses them (it skips a run whose folder holds results.json of the same config) and
    every strategy is compared with the very same baseline runs. Returns the runs copied; a
    layout verify does not use is simply ignored by it."""
    n = 0
    for res in (src_run / "verify").glob("*/baseline/*/results.json"):
        target = dst_run / res.parent.relative_to(src_run)
        if not target.exists():
            shutil.copytree(res.parent, target, ignore=shutil.ignore_patterns("checkpoints"))
            n += 1
    return n


# -- verify.json, read defensively --------------------------------------------------------------
def t_quantile(df: float, level: float = LEVEL) -> float:
    from scipy.stats import t

    return float(t.ppf((1 + level) / 2, df))


def study_result(entry: dict, baseline_values: list[float] | None = None) -> dict:
    """One study of verify.json as {winner_params, winner_trial, winner_is_baseline, baseline,
    winner (per-seed test values or None), gain, stderr, ci, n, verdict}. Per-seed values are read
    from ``winner/baseline.values`` or ``values.winner/baseline``; a missing interval is computed
    (paired Student t). A winner that is the baseline gains exactly 0 (``baseline_values``: the
    baseline's values trained elsewhere, when this run trained none)."""
    win, base = entry.get("winner") or {}, entry.get("baseline") or {}
    vals = entry.get("values") or {}
    b = base.get("values") or vals.get("baseline") or baseline_values
    w = win.get("values") or vals.get("winner")
    is_base = bool(entry.get("winner_is_baseline")) or (
        bool(win) and win.get("params") == base.get("params"))
    if is_base and w is None:
        w = b
    out = {"winner_trial": win.get("trial_id"), "winner_params": win.get("params"),
           "winner_valid": win.get("objective"), "winner_is_baseline": is_base,
           "baseline_params": base.get("params"), "baseline": b, "winner": w,
           "gain": entry.get("gain"), "stderr": entry.get("stderr"), "ci": entry.get("ci"),
           "n": entry.get("n") or len(w or []), "verdict": entry.get("verdict"),
           "reason": entry.get("reason")}
    if is_base:
        return {**out, "gain": 0.0, "stderr": 0.0, "ci": [0.0, 0.0], "verdict": "keep_baseline"}
    if out["ci"] is None and w and b and len(w) == len(b) >= 2:
        d = [x - y for x, y in zip(w, b, strict=True)]
        se = statistics.stdev(d) / math.sqrt(len(d))
        g, half = statistics.fmean(d), t_quantile(len(d) - 1) * se
        out.update(gain=g, stderr=se, ci=[g - half, g + half], verdict=out["verdict"] or (
            "adopt" if g - half > 0 else "keep_baseline" if g + half < 0 else "inconclusive"))
    return out


def mean_se(values: list[float] | None) -> tuple[float | None, float | None]:
    """Mean and its standard error over seeds (s.e. None below 2 values)."""
    if not values:
        return None, None
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return statistics.fmean(values), se


def combine(results: list[dict]) -> dict:
    """Mean gain over studies with its standard error sqrt(sum se_s^2) / S and a 95% t interval on
    Welch-Satterthwaite degrees of freedom (a study whose winner is the baseline: 0 ± 0)."""
    ok = [r for r in results if r["gain"] is not None and r["stderr"] is not None]
    if not ok:
        return {"gain": None, "stderr": None, "ci": None, "df": None, "studies": 0}
    s = len(ok)
    g = statistics.fmean(r["gain"] for r in ok)
    var = [r["stderr"] ** 2 for r in ok]
    se = math.sqrt(sum(var)) / s
    den = sum(v * v / max(r["n"] - 1, 1) for v, r in zip(var, ok, strict=True))
    df = sum(var) ** 2 / den if den > 0 else None
    half = t_quantile(df) * se if df else 0.0
    return {"gain": g, "stderr": se, "ci": [g - half, g + half], "df": df, "studies": s}


def ci_text(ci) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "-"


def num(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


# -- Tune trials on disk ------------------------------------------------------------------------
def result_lines(study_dir: Path) -> dict[str, list[dict]]:
    """{trial folder: its reported results in order} of one study."""
    return {f.parent.name: [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()]
            for f in sorted(Path(study_dir).glob("*/result.json"))}


def compute_trace(study_dir: Path, iterations: int) -> list[tuple[int, float]]:
    """(trial-iterations spent so far, objective) at each report of a finished trial, in timestamp
    order; spent = the sum over trials of the largest step each had reported by then."""
    events = sorted((r.get("timestamp", 0), r.get("step", 0), name, r.get("objective"))
                    for name, lines in result_lines(study_dir).items() for r in lines)
    spent: dict[str, int] = {}
    out = []
    for _ts, step, name, obj in events:
        spent[name] = max(spent.get(name, 0), step)
        if step >= iterations and isinstance(obj, int | float) and math.isfinite(obj):
            out.append((sum(spent.values()), obj))
    return out


def compute_to_reach(trace: list[tuple[int, float]], target: float) -> int | None:
    """Trial-iterations spent when a finished trial first reached ``target`` (mode max)."""
    return next((spent for spent, obj in trace if obj >= target - 1e-9), None)


def trial_iterations(study_dir: Path) -> int:
    """Trial-iterations a study spent: the sum of every trial's last step."""
    return sum(max((r.get("step", 0) for r in lines), default=0)
               for lines in result_lines(study_dir).values())
