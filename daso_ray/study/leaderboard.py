"""Read a search run directory without Ray: trials, finished trials, the per-study leaderboard.

Layout written by ``python -m daso_ray.search`` under ``<storage>/<name>/``::

    search.yaml      the search file as run       search.json   checksum, version, studies, budget
    optuna.db        the Optuna storage (sqlite)   <study>/       Tune's experiment directory, one
                                                                  ``<trial>/result.json`` per trial

A study is a scenario (``objective.type: per_scenario``) or ``robust``. A trial is *finished* when
it reached the trial budget (``step == iterations``); ASHA-stopped trials are ranked separately —
their objective is a low-fidelity value (PRUNED in the Optuna study). A trial whose last result
carries ``failed`` (a deterministic failure, e.g. a non-finite loss) is *failed*, with that reason.
A trial that ended before the budget otherwise is *stopped* only when Tune marked its last result
``done`` (ASHA's stop is logged with it; a trial cut by Ctrl-C or a lost driver never is): else it
is *interrupted*, and ``--resume`` finishes it. The trial whose parameters are the base config's
own values (``search.json`` ``baseline``) is marked ``baseline``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from daso_ray.errors import UserError
from daso_ray.study.objective import is_finite


def read_meta(run_dir: Path) -> dict:
    meta = Path(run_dir) / "search.json"
    if not meta.is_file():
        raise UserError(f"{run_dir}: not a search run directory (no search.json) — pass "
                        "<storage>/<name> of a `python -m daso_ray.search` run")
    return json.loads(meta.read_text())


def read_trials(study_dir: Path) -> list[dict]:
    """One record per Tune trial: id, params, last reported metrics, (step, objective) curve."""
    out = []
    for res in sorted(Path(study_dir).glob("*/result.json")):
        lines = [json.loads(ln) for ln in res.read_text().splitlines() if ln.strip()]
        if not lines:
            continue
        params_file = res.parent / "params.json"
        params = json.loads(params_file.read_text()) if params_file.is_file() else {}
        curve = {int(r["step"]): r.get("objective") for r in lines if "step" in r}
        first = lines[0]
        out.append({"trial_id": lines[-1].get("trial_id", res.parent.name), "dir": str(res.parent),
                    "params": params, "step": max(curve) if curve else 0,
                    "failed": lines[-1].get("failed"), "done": bool(lines[-1].get("done")),
                    "last": lines[-1], "curve": sorted(curve.items()),
                    # wall-clock span: start = first report's time minus the time it took
                    "start": first.get("timestamp", 0) - first.get("time_total_s", 0),
                    "end": lines[-1].get("timestamp", 0)})
    return out


def ranked(trials: list[dict], iterations: int, mode: str = "max") -> tuple[list[dict], list[dict]]:
    """(finished trials best first, stopped-early trials best first) by ``objective``."""
    def key(t):
        v = t["last"].get("objective")
        v = v if isinstance(v, int | float) and math.isfinite(v) else -math.inf
        return -v if mode == "max" else v if v != -math.inf else math.inf

    done = sorted((t for t in trials if t["step"] >= iterations), key=key)
    early = sorted((t for t in trials if t["step"] < iterations), key=key)
    return done, early


def leaderboard(run_dir: Path) -> dict[str, dict]:
    """{study: {"finished": [...], "stopped": [...], "failed": [...], "interrupted": [...]}} for
    every study of a run; each trial has ``baseline`` (bool) beside its record from
    :func:`read_trials`."""
    meta = read_meta(run_dir)
    board = {}
    for study in meta["studies"]:
        trials = read_trials(Path(run_dir) / study)
        for t in trials:
            t["baseline"] = "baseline" in meta and t["params"] == meta["baseline"]
        failed = [t for t in trials if t["failed"]]
        ok = [t for t in trials if not t["failed"]]
        done, early = ranked(ok, meta["iterations"], meta["objective"]["mode"])
        board[study] = {"finished": done, "stopped": [t for t in early if t["done"]],
                        "failed": failed, "interrupted": [t for t in early if not t["done"]]}
    return board


def slim(board: dict) -> dict:
    """The leaderboard as written to ``leaderboard.json``: ranked trials, objective and its
    standard error over seeds."""
    return {s: {k: [{"trial_id": t["trial_id"], "params": t["params"], "step": t["step"],
                     "baseline": t["baseline"], "objective": t["last"].get("objective"),
                     "objective_stderr": t["last"].get("objective_stderr"),
                     **({"reason": t["failed"]} if t["failed"] else {})} for t in v]
                for k, v in b.items()} for s, b in board.items()}


def value_text(t: dict) -> str:
    """``81.33 ± 0.67`` (objective ± its standard error over seeds; the value alone with one)."""
    v, se = t["last"].get("objective"), t["last"].get("objective_stderr")
    ok = isinstance(se, int | float) and math.isfinite(se)
    return fmt(v) + (f" ± {fmt(se)}" if ok else "")


def format_board(board: dict, meta: dict, top: int = 5) -> str:
    seeds = meta.get("seeds", meta.get("spec", {}).get("budget", {}).get("seeds", 1))
    lines = [f"leaderboard: objective = {meta['objective']['metric']} "
             f"({meta['objective']['type']}, {meta['objective']['mode']}), mean of {seeds} "
             "seed(s) ± standard error"]
    for study, b in board.items():
        n_done, n_stop = len(b["finished"]), len(b["stopped"])
        extra = "".join(f", {len(b[k])} {k}" for k in ("failed", "interrupted") if b.get(k))
        lines.append(f"\n[{study}] {n_done} finished, {n_stop} stopped early by ASHA (pruned)"
                     + extra)
        for i, t in enumerate(b["finished"][:top], start=1):
            lines.append(f"  {i}. {value_text(t)}  {t['trial_id']}{_mark(t)}  {params_text(t)}")
        for t in b["stopped"][:top]:
            lines.append(f"  -  {value_text(t)} at step {t['step']}  "
                         f"{t['trial_id']}{_mark(t)}  {params_text(t)}")
        for t in b.get("interrupted", [])[:top]:
            lines.append(f"  ?  interrupted at step {t['step']}  {t['trial_id']}{_mark(t)}  "
                         f"{params_text(t)} — --resume finishes it")
        for t in b.get("failed", []):  # every one: each names a cause to fix
            lines.append(f"  x  failed at step {t['step']}  {t['trial_id']}{_mark(t)}  "
                         f"{params_text(t)} — {t['failed']}")
        base = [t for t in b["finished"] if t["baseline"]]
        if b["finished"] and base and b["finished"][0] is not base[0]:
            lines.append(f"  best vs baseline on the objective: {_gap(b['finished'][0], base[0])}")
        elif b["finished"] and base:
            lines.append("  the baseline is the best finished trial: no sampled setting beat the "
                         "base config's own values")
    return "\n".join(lines)


def _mark(t: dict) -> str:
    return " (baseline)" if t.get("baseline") else ""


def _gap(best: dict, base: dict) -> str:
    """The search's own (selection-biased) gain; verify measures the real one on new seeds."""
    d = best["last"]["objective"] - base["last"]["objective"]
    ses = [x["last"].get("objective_stderr") for x in (best, base)]
    se = math.sqrt(sum(e * e for e in ses)) if all(is_finite(e) for e in ses) else None
    noise = f" (± {fmt(se)} s.e.)" if se else ""
    return (f"{d:+.2f}{noise} — measured on the seeds it was selected on; "
            "python -m daso_ray.verify measures it on held-out seeds")


def params_text(t: dict, sep: str = "  ") -> str:
    """A trial's parameters by their last name: ``t_proto=0.101  queue_length=16``."""
    return sep.join(f"{k.split('.')[-1]}={fmt(v)}" for k, v in sorted(t["params"].items()))


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"
    return str(v)
