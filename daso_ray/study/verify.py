"""Held-out verification of a search's winners, without Ray: the statistics, the plan of runs, and
``verify.json``.

The search selects its winner on the seeds and the validation hold-out it measured, so the
leaderboard's gain over the baseline is biased upwards (the winner's curse). Verification trains
each study's winner and the baseline (the base config's own values) again on seeds the search
never used (``HELD_OUT_SEED0`` ..), at the exported budget, and compares the *test* metric
``eval/top1_median`` seed by seed: a paired design, so the split and initialisation noise that
both runs of a seed share cancels out of the difference.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daso_ray.config import Config, differences, get_path, to_dict, validate
from daso_ray.errors import UserError
from daso_ray.files import atomic_write_text
from daso_ray.metrics import TEST_MEDIAN
from daso_ray.registry import algorithms
from daso_ray.study.compose import (
    HELD_OUT_SEED0,
    baseline_params,
    compose,
    final_iterations,
    run_name,
)
from daso_ray.study.leaderboard import leaderboard, read_meta
from daso_ray.study.space import studies
from daso_ray.study.spec import SearchSpec

METRIC = TEST_MEDIAN  # the test metric: the search never selected on it
LEVEL = 0.95
RULE = ("verdict: adopt if the whole 95% interval of the mean paired gain (winner - baseline, "
        "Student t, n-1 degrees of freedom) is above 0, keep_baseline if it is below 0, else "
        "inconclusive (more seeds may decide)")


def paired(baseline: list[float], winner: list[float], level: float = LEVEL) -> dict:
    """Paired Student t interval of the mean per-seed gain ``d = winner - baseline``.

    Values in points of the metric, seed i of one list paired with seed i of the other. Returns
    ``n``, ``mean_baseline``, ``mean_winner``, ``gain`` (mean d), ``stderr`` (sample std of d /
    sqrt(n)), ``ci`` = gain ± t_{(1+level)/2, n-1} · stderr, ``level``, ``verdict`` (``adopt``:
    lo > 0, ``keep_baseline``: hi < 0, else ``inconclusive``) and ``reason``. With n < 2 the
    interval is undefined (``stderr``, ``ci`` None): inconclusive. Raises ValueError on lists
    of different lengths.
    """
    from scipy.stats import t

    if len(baseline) != len(winner):
        raise ValueError(f"paired: {len(baseline)} baseline values but {len(winner)} winner values")
    d = [w - b for b, w in zip(baseline, winner, strict=True)]
    n = len(d)
    mean = lambda xs: statistics.fmean(xs) if xs else None  # noqa: E731
    out = {"n": n, "mean_baseline": mean(baseline), "mean_winner": mean(winner), "gain": mean(d),
           "stderr": None, "ci": None, "level": level}
    if n < 2:
        return {**out, "verdict": "inconclusive",
                "reason": f"{n} seed(s): a paired interval needs at least 2"}
    se = statistics.stdev(d) / math.sqrt(n)
    half = float(t.ppf((1 + level) / 2, n - 1)) * se
    lo, hi = out["gain"] - half, out["gain"] + half
    pct = f"{level:.0%}"
    if se < 1e-9:  # every seed moved by the same amount: a zero-width interval is no evidence
        verdict, reason = "inconclusive", (f"all {n} seeds differ by exactly {out['gain']:+.2f}: "
                                           "no noise estimate — verify with more seeds")
    elif lo > 0:
        verdict, reason = "adopt", f"the whole {pct} interval is above 0"
    elif hi < 0:
        verdict, reason = "keep_baseline", f"the whole {pct} interval is below 0"
    else:
        verdict, reason = "inconclusive", f"the {pct} interval contains 0"
    return {**out, "stderr": se, "ci": [lo, hi], "verdict": verdict, "reason": reason}


@dataclass(frozen=True)
class Job:
    """One verification run: a study's ``role`` (baseline | winner) on one scenario and seed."""

    study: str
    role: str
    scenario: str
    seed: int
    cfg: Config = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.study}/{self.role}/{run_name(self.scenario, self.seed)}"

    def dir(self, run_dir: Path) -> Path:
        """``RUN_DIR/verify/<study>/<role>/<scenario>__seed<S>/`` (absolute: tasks run elsewhere)."""
        return Path(run_dir).resolve() / "verify" / self.name


@dataclass
class Plan:
    spec: SearchSpec
    seeds: list[int]
    jobs: list[Job]
    studies: dict[str, dict]  # per study: what verify.json records before any value is known
    smoke: bool = False


def plan(run_dir: Path, k: int, smoke: bool = False, base: Config | None = None) -> Plan:
    """Every run verification needs: each study's winner (its best finished trial) and the
    baseline on seeds HELD_OUT_SEED0 .. +k-1, at the exported budget (``--smoke``: two evaluation
    periods past DASO's pre-training). ``base``: the run's base config (default: search.json's).
    A study whose winner is the baseline trial needs no run. Raises UserError when no study has
    a finished trial."""
    meta = read_meta(run_dir)
    spec = SearchSpec.model_validate(meta["spec"])
    base = base or validate(meta["base"])
    board = leaderboard(run_dir)
    if not any(b["finished"] for b in board.values()):
        raise UserError(f"{run_dir}: no finished trial yet (none reached {meta['iterations']} "
                        "iterations) — let the search run, or continue it with --resume")
    iters = meta.get("final_iterations") or final_iterations(spec, base)
    seeds = list(range(HELD_OUT_SEED0, HELD_OUT_SEED0 + k))
    # search.json records the baseline since it marks it; for older runs it is the same rule
    baseline = meta["baseline"] if "baseline" in meta else baseline_params(spec, base)
    jobs, entries = [], {}
    for study, scns in studies(spec).items():
        finished = board.get(study, {}).get("finished", [])
        entry = {"metric": METRIC, "seeds": seeds, "scenarios": [s.name for s in scns],
                 "baseline": {"params": baseline}, "winner": None}
        entries[study] = entry
        if not finished:
            entry.update(iterations=iters, verdict="inconclusive",
                         note="no finished trial in this study: nothing to verify")
            continue
        win = finished[0]
        entry["winner"] = {"trial_id": win["trial_id"], "params": win["params"],
                           "objective": win["last"].get("objective")}
        roles = {"baseline": baseline, "winner": win["params"]}
        new = [Job(study, role, scn.name, seed, _config(spec, base, params, scn, seed, iters, smoke))
               for role, params in roles.items() for scn in scns for seed in seeds]
        entry["iterations"] = new[0].cfg.run.iterations
        if win["baseline"]:  # the baseline won the search itself: nothing to compare
            entry.update(verdict="keep_baseline", gain=0.0, winner_is_baseline=True,
                         note="the baseline trial won the search itself (gain 0): nothing to train")
            continue
        jobs += new
    return Plan(spec, seeds, jobs, entries, smoke)


def _config(spec: SearchSpec, base: Config, params: dict, scn, seed: int, iters: int,
            smoke: bool) -> Config:
    cfg = compose(spec, base, params, scn, seed, iterations=iters)
    if not smoke:
        return cfg
    # Two evaluation windows past the base-learner phase (DASO's P: before it every config is the
    # same FixMatch and the paired gain would be 0 by construction), a checkpoint at the end.
    period = cfg.run.eval_period
    past_p = algorithms()[cfg.algorithm.name].pretrain_iters(cfg)
    short = min(iters, (past_p // period + 2) * period)
    raw = to_dict(cfg)
    raw["run"].update(iterations=short, checkpoint_period=short)
    return validate(raw, source=f"--smoke {scn.name}")


def state(job: Job, run_dir: Path) -> str:
    """``done`` (results.json), ``resume`` (a checkpoint) or ``new``. Raises UserError when the
    folder holds a run of another config (an earlier ``--smoke`` run, say): its results would
    answer a different question."""
    from daso_ray.engine import checkpoint

    out = job.dir(run_dir)
    saved = out / "config.yaml"  # written by run_one before its first iteration
    if saved.is_file():
        import yaml

        old, new = _comparable(yaml.safe_load(saved.read_text())), _comparable(to_dict(job.cfg))
        if old != new:
            key = next(iter(differences(new, old)), "config")
            raise UserError(f"{out}: holds a run of another config ({key}: {_shown(old, key)} != "
                            f"{_shown(new, key)}) — remove {Path(run_dir) / 'verify'} to verify "
                            "afresh, or rerun with the settings it was started with")
    if (out / "results.json").is_file():
        return "done"
    return "resume" if checkpoint.latest(out) else "new"


def _comparable(raw: dict) -> dict:
    """A config without what may differ between identical runs: paths (made absolute from the
    working directory of each call) and out_dir (a job's folder is given, not configured)."""
    raw = {s: dict(v) for s, v in raw.items()}
    for section, key in (("data", "root"), ("model", "pretrained_path"), ("run", "out_dir")):
        raw.get(section, {}).pop(key, None)
    return raw


def _shown(raw: dict, key: str) -> Any:
    return get_path(raw, key) if key != "config" else "..."


def finished(jobs: list[Job], run_dir: Path) -> dict[str, dict]:
    """{job name: its results.json} for the jobs already trained (checks every job's folder)."""
    states = {j.name: state(j, run_dir) for j in jobs}
    return {j.name: json.loads((j.dir(run_dir) / "results.json").read_text())
            for j in jobs if states[j.name] == "done"}


def value(res: dict, where: Path) -> float:
    """The compared metric of one run's results (points). Raises UserError when it is missing."""
    v = res.get(METRIC, res.get("final", {}).get(METRIC))
    if not isinstance(v, int | float):
        raise UserError(f"{where}: results.json has no {METRIC} — remove the folder and rerun verify")
    return float(v)


def summarize(p: Plan, results: dict[str, dict], run_dir: Path) -> dict:
    """verify.json's content from the plan and every job's results. Per study: ``baseline`` and
    ``winner`` each with ``values`` (per seed; a robust study: mean over its scenarios) and
    ``per_scenario``, then :func:`paired`'s fields (its ``reason`` as ``note``)."""
    out = {}
    for study, entry in p.studies.items():
        entry = {**entry, "smoke": p.smoke}
        jobs = [j for j in p.jobs if j.study == study]
        if jobs:
            per = {r: {s: [value(results[j.name], j.dir(run_dir)) for j in jobs
                           if j.role == r and j.scenario == s] for s in entry["scenarios"]}
                   for r in ("baseline", "winner")}
            vals = {r: [statistics.fmean(v[i] for v in per[r].values()) for i in range(len(p.seeds))]
                    for r in per}
            stats = paired(vals["baseline"], vals["winner"])
            stats["note"] = stats.pop("reason")
            for r in per:
                entry[r] = {**entry[r], "values": vals[r], "per_scenario": per[r]}
            entry.update(stats)
        out[study] = entry
    return {"metric": METRIC, "level": LEVEL, "seeds": p.seeds, "smoke": p.smoke, "rule": RULE,
            "studies": out}


def write(run_dir: Path, report: dict) -> Path:
    path = Path(run_dir) / "verify.json"
    atomic_write_text(path, json.dumps(report, indent=1))
    return path


def read(run_dir: Path) -> dict | None:
    """verify.json of a run, or None when the run was not verified."""
    path = Path(run_dir) / "verify.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f}"


def _ci(entry: dict) -> str:
    ci = entry.get("ci")
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "undefined"


def format_table(report: dict) -> str:
    """Per study: seeds, baseline mean, winner mean, gain, its interval, verdict; then the rule."""
    seeds = report["seeds"]
    lines = [f"verify: {report['metric']} (test set) of each study's winner vs the baseline, "
             f"paired on held-out seeds {seeds[0]}..{seeds[-1]}"
             + (" (--smoke: a check of the path, not a verdict to trust)" if report.get("smoke") else ""),
             f"{'study':<14} {'seeds':>5} {'baseline':>9} {'winner':>9} {'gain':>7}  "
             f"{'95% CI':<18} verdict"]
    for study, e in report["studies"].items():
        lines.append(f"{study:<14} {e.get('n', 0):>5} {_num(e.get('mean_baseline')):>9} "
                     f"{_num(e.get('mean_winner')):>9} {_signed(e.get('gain')):>7}  "
                     f"{_ci(e) if e.get('n') else '-':<18} {e['verdict']}"
                     + ("" if e.get("n") else f"  ({e['note']})"))
    return "\n".join([*lines, report.get("rule", RULE)])


def header_line(entry: dict | None, run_dir: str = "RUN_DIR") -> str:
    """One line for an exported file's header: the study's verdict, gain and interval."""
    if entry is None:
        return f"not verified: python -m daso_ray.verify {run_dir}"
    smoke = " (a --smoke check: tiny budget, not a verdict to trust)" if entry.get("smoke") else ""
    if not entry.get("n"):
        return f"verify: {entry['verdict']} — {entry['note']}{smoke}"
    return (f"verify: {entry['verdict']} — {entry['metric']} winner {entry['mean_winner']:.2f} vs "
            f"baseline {entry['mean_baseline']:.2f}: gain {_signed(entry['gain'])} points, "
            f"{entry['level']:.0%} CI {_ci(entry)}, {entry['n']} held-out seeds" + smoke)


def keeps_baseline(entry: dict | None) -> bool:
    """True when the baseline's values must be shipped instead of the winner's (a winner that is
    the baseline trial needs no swap)."""
    return bool(entry) and entry["verdict"] == "keep_baseline" and not entry.get("winner_is_baseline")
