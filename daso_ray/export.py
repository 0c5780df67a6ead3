"""``python -m daso_ray.export RUN_DIR --out DIR [--top-k K]``

Writes each study's best finished trial as a runnable training config. The files are
``<DIR>/<name>__<scenario>.yaml`` (``__top<i>`` for the i-th best with ``--top-k``). A
``robust`` winner is written once per scenario, with the same parameters. Each file starts with a
provenance header (trial id, metric and value, search-file checksum, package version) and trains
``final_iterations`` (or the base config's ``run.iterations``). Needs no Ray: it reads the run dir.
With ``RUN_DIR/verify.json`` (``python -m daso_ray.verify``) the header carries each study's
held-out verdict, and a ``keep_baseline`` study's file holds the baseline's values instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from daso_ray import __version__, storage
from daso_ray.cli import summary as command_summary
from daso_ray.config import to_dict, validate
from daso_ray.errors import UserError, cli_entry
from daso_ray.files import atomic_write_text
from daso_ray.study.compose import compose, final_iterations
from daso_ray.study.leaderboard import leaderboard, read_meta, value_text
from daso_ray.study.objective import is_finite
from daso_ray.study.spec import SearchSpec
from daso_ray.study.verify import header_line, keeps_baseline
from daso_ray.study.verify import read as read_verify


def export(run_dir: Path, out: Path, top_k: int = 1) -> list[dict]:
    """Write the configs; one record (path, study, trial, value, params) per file. Nothing is
    written unless every file can be."""
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir}: no such run directory — pass <storage>/<name> of a search")
    meta = read_meta(run_dir)
    spec, base = SearchSpec.model_validate(meta["spec"]), validate(meta["base"])
    board = leaderboard(run_dir)
    if not any(b["finished"] for b in board.values()):
        raise UserError(f"{run_dir}: no finished trial yet (none reached {meta['iterations']} "
                        "iterations) — let the search run, or continue it with --resume")
    board = _finite_only(board, meta["objective"]["metric"])
    iterations = final_iterations(spec, base)
    checked = (read_verify(run_dir) or {}).get("studies", {})
    files: dict[Path, str] = {}
    records = []
    for study, b in board.items():
        scenarios = spec.scenarios if study == "robust" else [s for s in spec.scenarios
                                                              if s.name == study]
        entry = _verified(checked, study, b["finished"])
        for rank, trial in enumerate(b["finished"][:top_k], start=1):
            # Verification covers each study's best trial only; keep_baseline ships the baseline.
            baseline = rank == 1 and keeps_baseline(entry)
            params = entry["baseline"]["params"] if baseline else trial["params"]
            note = (header_line(entry, str(run_dir)) if rank == 1 else
                    "not verified: python -m daso_ray.verify checks each study's best trial only")
            for scn in scenarios:
                cfg = to_dict(compose(spec, base, params, scn, seed=0, iterations=iterations))
                stem = f"{spec.name}__{scn.name}" + ("__robust" if study == "robust" else "")
                stem += f"__top{rank}" if rank > 1 else ""
                cfg["run"]["out_dir"] = f"runs/final/{stem}"
                path = Path(out) / f"{stem}.yaml"
                head = _header(meta, study, trial, params, note, baseline, path)
                files[path] = head + yaml.safe_dump(cfg, sort_keys=False)
                records.append({"path": path, "study": study, "params": params,
                                "trial_id": "baseline" if baseline else trial["trial_id"],
                                "value": _objective(b, baseline, trial),
                                "verdict": entry["verdict"] if entry and rank == 1 else "-"})
    Path(out).mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        atomic_write_text(path, text)
    return records


def summary(records: list[dict], metric: str) -> str:
    """The exported configs as a table: study, the search's objective value, verify's verdict
    (``-``: not verified), the exported trial (``baseline``: its values), parameters, file."""
    lines = [f"{'study':<14} {metric:>20}  {'verdict':<13} {'trial':<9} params -> file"]
    for r in records:
        params = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in sorted(r["params"].items()))
        lines.append(f"{r['study']:<14} {r['value']:>20.2f}  {r['verdict']:<13} {r['trial_id']:<9} "
                     f"{params} -> {r['path']}")
    return "\n".join(lines)


def _finite_only(board: dict, metric: str) -> dict:
    """The board with only the finished trials whose objective is a finite number: a NaN (e.g.
    a valid/* metric over an empty hold-out) ranks nothing and is never a winner. A study whose
    finished trials are all non-finite stops the export (one error line, nothing written)."""
    out, bad = {}, []
    for study, b in board.items():
        finite = [t for t in b["finished"] if is_finite(t["last"].get("objective"))]
        if b["finished"] and not finite:
            bad.append(study)
        out[study] = {**b, "finished": finite}
    if bad:
        raise UserError(f"study {', '.join(bad)}: no finished trial has a finite objective "
                        f"({metric} is NaN or missing in all) — check the metric exists (a valid/ "
                        "metric needs data.num_valid >= the class count), then search again")
    return out


def _verified(checked: dict, study: str, finished: list[dict]) -> dict | None:
    """The study's verify.json entry; None when not verified, or when it is about another winner
    (the search was resumed since)."""
    e = checked.get(study)
    same = e and finished and (e["winner"] or {}).get("trial_id") == finished[0]["trial_id"]
    return e if same else None


def _objective(board: dict, baseline: bool, trial: dict) -> float:
    """The search's objective of what is exported (the baseline trial's: NaN if it was stopped)."""
    if baseline:
        trial = next((t for t in board["finished"] if t["baseline"]), {"last": {}})
    return trial["last"].get("objective", float("nan"))


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _header(meta: dict, study: str, trial: dict, params: dict, verify: str, baseline: bool,
            path: Path) -> str:
    obj = meta["objective"]
    lines = [f"exported by daso_ray {__version__} from search '{meta['name']}', study '{study}'",
             f"trial {trial['trial_id']}: {obj['metric']} ({_objective_kind(obj)}) = "
             f"{value_text(trial)} after {trial['step']} iterations (mean of the search's seeds "
             "± s.e.; selected on them, so optimistic: see the verify line)",
             f"search file {meta['source']} sha256 {meta['sha256']}", verify]
    if baseline:
        lines.append(f"this file holds the BASELINE's values (the base config's own), not those of "
                     f"the search's winner {trial['trial_id']}: held-out seeds did not confirm it")
    lines += ["params: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())),
              f"train: python -m daso_ray.train {path} --seeds 3"]
    return "".join(f"# {ln}\n" for ln in lines)


def _objective_kind(obj: dict) -> str:
    """``per_scenario``, or ``robust, mean|worst`` (the aggregate only means something there)."""
    return obj["type"] if obj["type"] == "per_scenario" else f"{obj['type']}, {obj.get('aggregate')}"


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daso_ray.export",
                                description=command_summary("daso_ray.export"))
    p.add_argument("run_dir", help="a search run: <storage>/<name> (a directory or s3://...)")
    p.add_argument("--out", type=Path, required=True, help="folder for the YAML configs")
    p.add_argument("--top-k", type=int, default=1, help="export the K best finished trials per study")
    args = p.parse_args(argv)
    if args.top_k < 1:
        raise UserError("--top-k: must be >= 1")
    run_dir = storage.local_run_dir(args.run_dir)  # a storage URI is synced down first
    records = export(run_dir, args.out, args.top_k)
    print(summary(records, read_meta(run_dir)["objective"]["metric"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
