"""U1: utilization of a simulated cluster, the studies of one search concurrently vs one after another.

A local Ray cluster with 8 CPUs declared (on the 2-core machine), trials of 1 CPU, digits-LT, three
scenarios (consistent, uniform, reversed), N trials per study of T iterations (full: 4 x 120,
quick: 2 x 30), max_concurrent 2 per study, no ASHA, 1 seed per trial:

- "after": one search of the 3 scenarios: every study in flight at once (up to 6 of 8 slots);
- "before": the old behaviour, the studies one after another: 3 single-scenario searches in
  sequence (up to 2 of 8 slots).

Utilization = busy trial-slot-seconds (sum over trials of (end - start) x 1 CPU, from
``leaderboard.read_trials``: start = first report's time - its ``time_total_s``, so a trial's actor
start-up is not counted as busy) / (8 slots x wall), wall = first trial start -> last trial end of
each search, summed over the sequence (the driver and Tune start-up between the searches is left
out, in favour of "before"). Value: after / before; goal >= 2 (three studies at once can at most
triple it). Caveat: 8 slots on 2 real cores, so 6 concurrent trials run ~3x slower and fill their
slots longer: this is the scheduler's view, what a real 8-CPU cluster would see, not CPU use. The
throughput (trial-iterations per wall second) is reported beside it: on 2 cores it cannot grow
much. Tune's timestamps have 1 s resolution; short quick trials make the figures coarse.
Run from :mod:`benchmarks.search` (which holds the cluster).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.search_util import digits_spec, search

SCENARIOS = ("consistent", "uniform", "reversed")
T_PROTO = {"type": "float", "low": 0.02, "high": 1.0, "log": True}


def trials_of(run_dir: Path) -> list[dict]:
    """Every Tune trial of every study of a search run."""
    from daso_ray.study.leaderboard import read_meta, read_trials

    return [t for study in read_meta(run_dir)["studies"] for t in read_trials(run_dir / study)]


def u1(tmp: Path, quick: bool, address: str, slots: int = 8) -> dict:
    n, iters = (2, 30) if quick else (4, 120)
    kw = {"params": {"algorithm.daso.t_proto": T_PROTO},
          "set": {"run.eval_period": 10, "run.checkpoint_period": iters,
                  "algorithm.daso.pretrain_iters": 10},
          "budget": {"num_samples": n, "max_concurrent": 2}}
    res = {}
    for label, groups in (("after", [SCENARIOS]), ("before", [(s,) for s in SCENARIOS])):
        busy = span = its = wall = 0.0
        for group in groups:
            name = f"u1_{label}_{group[0] if label == 'before' else 'all'}"
            run_dir, w = search(digits_spec(name, tmp / "runs", iters, scenarios=group, **kw),
                                tmp, address)
            trials = trials_of(run_dir)
            busy += sum(t["end"] - t["start"] for t in trials)  # x 1 CPU per trial
            span += max(t["end"] for t in trials) - min(t["start"] for t in trials)
            its += sum(t["step"] for t in trials)
            wall += w
        res[label] = {"utilization": busy / (slots * span), "busy_slot_s": round(busy, 1),
                      "trial_span_s": round(span, 1), "process_wall_s": round(wall, 1),
                      "trial_iterations_per_s": its / span, "searches": len(groups)}
    after, before = res["after"], res["before"]
    return {"value": after["utilization"] / before["utilization"], "unit": "x utilization after/before",
            "goal": 2.0, "detail": {
                **res, "slots": slots, "trials_per_study": n, "iterations": iters, "max_concurrent": 2,
                "throughput_ratio": after["trial_iterations_per_s"] / before["trial_iterations_per_s"],
                "note": f"{slots} CPUs declared on a 2-core machine: slot utilization (the "
                        "scheduler's view), not CPU use; timestamps have 1 s resolution"}}


def format_u1(r: dict) -> str:
    d = r["detail"]
    rows = [f"U1 {d['slots']} slots; 3 studies x {d['trials_per_study']} trials x {d['iterations']} "
            f"iterations, max_concurrent {d['max_concurrent']}",
            f"{'':<20} {'utilization':>11} {'busy slot-s':>11} {'span s':>7} {'process s':>9} "
            f"{'trial-it/s':>10}"]
    for label in ("before", "after"):
        x = d[label]
        name = f"{label} ({x['searches']} search{'es' if x['searches'] > 1 else ''})"
        rows.append(f"{name:<20} {x['utilization']:>11.3f} {x['busy_slot_s']:>11.0f} "
                    f"{x['trial_span_s']:>7.0f} {x['process_wall_s']:>9.0f} "
                    f"{x['trial_iterations_per_s']:>10.1f}")
    rows.append(f"after/before: utilization {r['value']:.2f}x (goal >= {r['goal']:.0f}), "
                f"throughput {d['throughput_ratio']:.2f}x ({d['note']})")
    return "\n".join(rows)
