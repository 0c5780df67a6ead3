"""Digits-LT table: FixMatch vs DASO vs DebiasPL vs SeMi, seeds x {consistent, uniform, reversed}.

Runs ``python -m daso_ray.train configs/digits_lt_<algo>.yaml --seeds N`` for every cell (one fresh
process each), prints mean ± std of the test top-1 median (= balanced accuracy: the test set is
class-balanced) and writes ``benchmarks/results/<out folder name>.json``. Finished cells are reused.

    python -m benchmarks.digits_table --seeds 3 --out runs/digits_table
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SCENARIOS = {"consistent": ["data.scenario=consistent", "data.imb_ratio_u=10"],
             "uniform": ["data.scenario=uniform", "data.imb_ratio_u=1"],
             "reversed": ["data.scenario=reversed", "data.imb_ratio_u=10"]}
ALGOS = ("fixmatch", "daso", "debiaspl", "semi")
KEY = "eval/top1_median"


def run_cell(algo: str, scenario: str, seeds: int, out: Path, extra: list[str]) -> dict:
    cell = out / f"{algo}__{scenario}"
    if not (cell / "results.json").is_file():
        sets = [a for s in SCENARIOS[scenario] + extra for a in ("--set", s)]
        cmd = [sys.executable, "-m", "daso_ray.train", f"configs/digits_lt_{algo}.yaml",
               "--seeds", str(seeds), "--out", str(cell), *sets]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads((cell / "results.json").read_text())["summary"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("runs/digits_table"))
    p.add_argument("--algos", nargs="+", default=list(ALGOS))
    p.add_argument("--set", dest="extra", action="append", default=[])
    args = p.parse_args()
    table = {}
    for algo in args.algos:
        for scen in SCENARIOS:
            table.setdefault(algo, {})[scen] = run_cell(algo, scen, args.seeds, args.out, args.extra)
            s = table[algo][scen][KEY]
            print(f"  {algo:9s} {scen:10s} {s['mean']:.2f} ± {s['std']:.2f}", flush=True)
    print(f"\n{KEY} (%), mean ± std over {args.seeds} seeds")
    print(f"{'algorithm':10s}" + "".join(f"{s:>18s}" for s in SCENARIOS) + f"{'mean':>10s}")
    for algo, row in table.items():
        means = [row[s][KEY]["mean"] for s in SCENARIOS]
        cells = "".join(f"{row[s][KEY]['mean']:>11.2f} ± {row[s][KEY]['std']:4.2f}" for s in SCENARIOS)
        print(f"{algo:10s}{cells}{sum(means) / len(means):>10.2f}")
    res = Path("benchmarks/results")
    res.mkdir(parents=True, exist_ok=True)
    (res / f"{args.out.name}.json").write_text(
        json.dumps({"seeds": args.seeds, "overrides": args.extra, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
