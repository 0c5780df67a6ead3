"""W1: the shipped digits search with and without shared warm-ups (issue 16), side by side.

The same search file (``search_spaces/digits_lt.yaml``: 3 scenarios, 6 trials of 500 iterations,
2 seeds, DASO's P = 150; ``--quick``: its ``--smoke`` version) runs twice on the same local
cluster, ``budget.share_warmup`` true then false. Per run: wall seconds (the search command) and
the compute it trained, in trial-iterations: every trial run's iterations (its last step, minus
the step it forked at, from ``forked_from.json``) plus each warm-up's P. Value: compute without /
with sharing (x); the wall ratio beside it. The two leaderboards must be identical (a forked trial
is bit-identical to one trained from step 0): the JSON says whether they are. The 2 CPUs are shared
with other work on the machine: wall times are that machine's. Run from :mod:`benchmarks.search`.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from benchmarks.search_util import DATA, REPO, search

FILE = REPO / "search_spaces" / "digits_lt.yaml"


def trained_iterations(run_dir: Path) -> dict:
    """{"trials": trial-run iterations, "warmups": warm-up iterations} a search run trained."""
    from daso_ray.engine.warmup import FORKED

    trials = warmups = 0
    for metrics in run_dir.glob("*/trial_*/runs/*/metrics.jsonl"):
        lines = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln]
        forked = metrics.parent / FORKED
        start = json.loads(forked.read_text())["step"] if forked.is_file() else 0
        trials += max((r["step"] for r in lines), default=0) - start
    for marker in run_dir.glob("*/warmup/*/warmup.json"):
        warmups += json.loads(marker.read_text())["step"]
    return {"trials": trials, "warmups": warmups, "total": trials + warmups}


def board(run_dir: Path) -> dict:
    """{study: sorted (params, objective) of every finished trial}."""
    from daso_ray.study.leaderboard import leaderboard

    return {s: sorted((json.dumps(t["params"], sort_keys=True), t["last"].get("objective"))
                      for t in b["finished"]) for s, b in leaderboard(run_dir).items()}


def w1(tmp: Path, quick: bool, address: str) -> dict:
    runs = {}
    for share in (True, False):
        spec = yaml.safe_load(FILE.read_text())
        name = f"w1_{'shared' if share else 'scratch'}"
        spec.update(name=name, base=str(FILE.parent / spec["base"]), storage=str(tmp / "w1"))
        spec["set"]["data.root"] = str(DATA)
        spec["budget"]["share_warmup"] = share
        file = tmp / f"{name}.yaml"
        file.write_text(yaml.safe_dump(spec, sort_keys=False))
        _, wall = search(file, tmp, address, extra=("--smoke",) if quick else ())
        run_dir = tmp / "w1" / (f"{name}_smoke" if quick else name)
        runs[share] = {"wall_s": round(wall, 1), "iterations": trained_iterations(run_dir),
                       "board": board(run_dir)}
    on, off = runs[True], runs[False]
    ratio = off["iterations"]["total"] / max(on["iterations"]["total"], 1)
    return {"value": round(ratio, 3), "unit": "x", "goal": None, "detail": {
        "smoke": quick, "search": str(FILE.relative_to(REPO)),
        "shared": {k: v for k, v in on.items() if k != "board"},
        "scratch": {k: v for k, v in off.items() if k != "board"},
        "wall_ratio": round(off["wall_s"] / max(on["wall_s"], 1e-9), 3),
        "identical_leaderboards": on["board"] == off["board"]}}


def format_w1(r: dict) -> str:
    d = r["detail"]
    rows = [f"W1 shared warm-ups ({d['search']}{', smoke' if d['smoke'] else ''}):",
            f"{'':10} {'wall s':>8} {'trial it':>9} {'warm-up it':>11} {'total it':>9}"]
    for k in ("scratch", "shared"):
        it = d[k]["iterations"]
        rows.append(f"{k:10} {d[k]['wall_s']:8.0f} {it['trials']:9d} {it['warmups']:11d} "
                    f"{it['total']:9d}")
    rows.append(f"compute without/with sharing {r['value']:.2f}x, wall {d['wall_ratio']:.2f}x; "
                f"identical leaderboards: {d['identical_leaderboards']}")
    return "\n".join(rows)
