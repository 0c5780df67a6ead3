"""``python -m daso_ray.search FILE [--address ADDR] [--resume] [--smoke] [--name NAME]``

Hyperparameter search over imbalance scenarios: OptunaSearch (TPE) + ASHA on Ray Tune. The search
file is validated before Ray starts. Results go to ``<storage>/<name>/`` (see
``daso_ray/leaderboard.py``); ``--resume`` continues a killed search from there, with no finished
trial lost or repeated. ``--smoke`` shrinks every iteration count of the search ~25x (keeping the
schedule's shape) and caps it at 4 trials per study: a check of the whole path in about a minute.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

from daso_ray import __version__, storage
from daso_ray.data.ffcv_io import atomic_write_text
from daso_ray.errors import UserError, cli_entry
from daso_ray.leaderboard import format_board, leaderboard
from daso_ray.ray_jobs.space import (
    SearchSpec,
    base_with_set,
    check_spec,
    file_sha256,
    load_search,
    trial_iterations,
)

# Iteration-valued keys scaled together by --smoke, so P < T and periods still divide T.
SCALED_KEYS = ("run.eval_period", "run.checkpoint_period", "algorithm.daso.pretrain_iters",
               "algorithm.daso.dist_update_period", "algorithm.semi.est_epoch_iters",
               "algorithm.semi.epoch_iters", "algorithm.semi.decay_step", "optim.warmup_iters")
SMOKE_ITERATIONS = 40


def smoke(spec: SearchSpec, base: dict) -> tuple[SearchSpec, dict]:
    """The same search, SMOKE_ITERATIONS iterations per trial and at most 4 trials per study."""
    iters = trial_iterations(spec, base)
    f = min(1.0, SMOKE_ITERATIONS / iters)
    raw = spec.model_dump()
    new_set = dict(raw["set"])
    for key in SCALED_KEYS:
        sect, *rest = key.split(".")
        node = base.get(sect, {})
        for part in rest[:-1]:
            node = node.get(part, {})
        if rest[-1] in node or key in new_set:
            new_set[key] = max(1, int(round(new_set.get(key, node.get(rest[-1])) * f)))
    new_set["run.median_last"] = 2
    period = new_set.get("run.eval_period", max(1, int(iters * f) // 4))
    new_set["run.checkpoint_period"] = 2 * period
    new_set["run.eval_period"] = period
    raw["set"] = new_set
    for key, prm in raw["params"].items():  # searched iteration counts shrink with the rest
        if key in SCALED_KEYS:
            shrink = lambda v: max(1, int(round(v * f)))  # noqa: E731
            prm.update({k: shrink(prm[k]) for k in ("low", "high") if prm[k] is not None})
            if prm["values"]:
                prm["values"] = sorted({shrink(v) for v in prm["values"]})
    b = raw["budget"]
    b.update(iterations=max(period, int(round(iters * f)) // period * period), seeds=1,
             num_samples=min(b["num_samples"], 4), max_concurrent=min(b["max_concurrent"], 2))
    if b["asha"]:
        b["asha"].update(grace=period, reduction=2.0)
    out = SearchSpec.model_validate(raw)
    problems = check_spec(out, base)
    if problems:
        raise UserError("--smoke: " + problems[0])
    return out, base_with_set(out, base)


def _absolute_paths(base: dict) -> dict:
    """Data and weight paths that exist here become absolute, so trials find them whatever their
    working directory; others stay relative to the job's working directory on each node."""
    for sect, key in (("data", "root"), ("model", "pretrained_path")):
        value = base.get(sect, {}).get(key)
        if value and Path(value).exists():
            base[sect][key] = str(Path(value).resolve())
        elif value:
            print(f"note: {sect}.{key}: {value} does not exist here; trials look for it relative "
                  "to their node's working directory")
    return base


def _run_location(spec: SearchSpec) -> tuple[Path, str]:
    """(the local dir the driver reads, where Tune writes: the same dir, or a storage URI)."""
    if storage.is_remote(spec.storage):
        uri = storage.join(spec.storage, spec.name)
        return storage.mirror_of(uri), uri
    local = (Path(spec.storage) / spec.name).resolve()
    return local, str(local)


def _prepare_run_dir(spec: SearchSpec, base: dict, file: Path, resume: bool) -> tuple[Path, str]:
    run_dir, uri = _run_location(spec)
    meta = run_dir / "search.json"
    remote_meta = storage.is_remote(uri) and storage.exists(storage.join(uri, "search.json"))
    if resume:
        if not meta.is_file() and remote_meta:
            storage.download(uri, run_dir)
        if not meta.is_file():
            raise UserError(f"--resume: {uri} holds no search — start it without --resume")
        old = json.loads(meta.read_text())
        if old["sha256"] != file_sha256(file):
            print(f"note: {file} changed since the run started; continuing the run as started "
                  f"(its copy is {run_dir / 'search.yaml'})")
        return run_dir, uri
    if meta.exists() or remote_meta:
        raise UserError(f"{uri} already holds a search — continue it with --resume, or pass "
                        "--name NEW_NAME")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "search.yaml", file.read_text())
    from daso_ray.ray_jobs.tuner import studies

    info = {"name": spec.name, "source": str(file), "sha256": file_sha256(file),
            "version": __version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "studies": list(studies(spec)), "iterations": trial_iterations(spec, base),
            "objective": spec.objective.model_dump(), "spec": spec.model_dump(), "base": base}
    atomic_write_text(meta, json.dumps(info, indent=1))
    if storage.is_remote(uri):
        for name in ("search.yaml", "search.json"):
            storage.upload(run_dir / name, storage.join(uri, name))
    return run_dir, uri


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daso_ray.search", description=__doc__.split("\n")[2])
    p.add_argument("file", type=Path, help="search-space YAML (see search_spaces/)")
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local one)")
    p.add_argument("--resume", action="store_true", help="continue a killed search")
    p.add_argument("--smoke", action="store_true", help="tiny budget: check the whole path quickly")
    p.add_argument("--name", help="run name (default: the file's name:)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local cluster (default: all)")
    p.add_argument("--storage", help="override the file's storage: (a shared dir, or s3://...)")
    args = p.parse_args(argv)
    spec, base = load_search(args.file)  # every problem of the file, before Ray starts
    if args.name:
        spec = spec.model_copy(update={"name": args.name})
    if args.storage:
        spec = spec.model_copy(update={"storage": args.storage})
        problems = check_spec(spec, base)
        if problems:
            raise UserError(f"--storage: {problems[0]}")
    if args.smoke:
        spec, base = smoke(spec, base)
    run_dir, uri = _prepare_run_dir(spec, base, args.file, args.resume)
    if args.resume:  # the run continues exactly as it started
        info = json.loads((run_dir / "search.json").read_text())
        spec, base = SearchSpec.model_validate(info["spec"]), info["base"]
    from daso_ray.ray_jobs.cluster import connect
    from daso_ray.ray_jobs.tuner import run_studies

    url = connect(args.address, args.num_cpus)
    print(f"search {spec.name}: results in {uri}" + (f"; Ray dashboard {url}" if url else ""),
          flush=True)
    t0 = time.time()
    run_studies(spec, _absolute_paths(copy.deepcopy(base)), uri, args.resume)
    if storage.is_remote(uri):  # the leaderboard, export and report read the local mirror
        if (run_dir / "optuna.db").is_file():  # first, so the sync down cannot replace it
            storage.upload(run_dir / "optuna.db", storage.join(uri, "optuna.db"))
        storage.download(uri, run_dir)
    board = leaderboard(run_dir)
    info = json.loads((run_dir / "search.json").read_text())
    print(format_board(board, info), flush=True)
    slim = {s: {k: [{"trial_id": t["trial_id"], "params": t["params"], "step": t["step"],
                     "objective": t["last"].get("objective")} for t in v] for k, v in b.items()}
            for s, b in board.items()}
    atomic_write_text(run_dir / "leaderboard.json", json.dumps(slim, indent=1))
    if storage.is_remote(uri):
        storage.upload(run_dir / "leaderboard.json", storage.join(uri, "leaderboard.json"))
    print(f"search wall time {time.time() - t0:.0f} s; export with: python -m daso_ray.export "
          f"{os.path.relpath(run_dir)} --out configs/best", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

