"""``python -m daso_ray.search FILE [--address ADDR] [--resume] [--smoke] [--name NAME]``

Hyperparameter search over imbalance scenarios: OptunaSearch (TPE) + ASHA on Ray Tune. The search
file is validated before Ray starts. Results go to ``<storage>/<name>/`` (see
``daso_ray/leaderboard.py``); ``--resume`` continues a killed search from there, with no finished
trial lost or repeated. ``--smoke`` shrinks every iteration count of the search ~25x (keeping the
schedule's shape) and caps it at 4 trials per study: a check of the whole path in about a minute.
Ctrl-C stops every study, saves its state, prints the ``--resume`` command and exits 130.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from daso_ray import __version__, storage
from daso_ray.cli import summary as command_summary
from daso_ray.config import Config, to_dict, validate
from daso_ray.errors import UserError, cli_entry
from daso_ray.files import atomic_write_text
from daso_ray.study.compose import baseline_params, final_iterations, trial_iterations
from daso_ray.study.leaderboard import format_board, leaderboard, slim
from daso_ray.study.load import check_spec, load_search, smoke
from daso_ray.study.space import studies
from daso_ray.study.spec import SearchSpec, file_sha256


def _absolute_paths(base: Config) -> Config:
    """Data and weight paths that exist here become absolute, so trials find them whatever their
    working directory; others stay relative to the job's working directory on each node."""
    raw = to_dict(base)
    for sect, key in (("data", "root"), ("model", "pretrained_path")):
        value = raw[sect][key]
        if value and Path(value).exists():
            raw[sect][key] = str(Path(value).resolve())
        elif value:
            print(f"note: {sect}.{key}: {value} does not exist here; trials look for it relative "
                  "to their node's working directory")
    return validate(raw)


def _data_problem(spec: SearchSpec, base: Config, remote: bool) -> str | None:
    """The base config's ``data.root`` must be a prepared dataset here: a wrong one would fail
    every trial alike, after Ray started. On a cluster joined by address the data may live on
    the nodes only, so a root missing here is left to the trials (``_absolute_paths`` notes it)."""
    root, where = base.data.root, "set.data.root" if "data.root" in spec.set else (
        f"{spec.base}: data.root")
    if not root or (remote and not Path(root).exists()):
        return None
    if (Path(root) / "manifest.json").is_file():
        return None
    src = "" if base.data.dataset == "digits" else " --src SOURCE"
    what = "holds no prepared dataset (no manifest.json)" if Path(root).is_dir() else "does not exist"
    return (f"{where}: {root} {what} — prepare it: python -m daso_ray.prepare "
            f"{base.data.dataset}{src} --out {root} (or point data.root at a prepared folder)")


def _resume_hint(argv: list[str]) -> str:
    """The command that continues this search: the same arguments, with ``--resume``."""
    args = [a for a in argv if a != "--resume"]
    return shlex.join(["python", "-m", "daso_ray.search", *args, "--resume"])


def _run_location(spec: SearchSpec) -> tuple[Path, str]:
    """(the local dir the driver reads, where Tune writes: the same dir, or a storage URI)."""
    if storage.is_remote(spec.storage):
        uri = storage.join(spec.storage, spec.name)
        return storage.mirror_of(uri), uri
    local = (Path(spec.storage) / spec.name).resolve()
    return local, str(local)


def run_name(name: str, override: str | None, smoke: bool) -> str:
    """The run's name: ``--name``, else the file's ``name:`` — with ``_smoke`` added for a smoke
    run, which must not take the real search's folder (the real run would then be refused as
    already started, and its ``--resume`` would continue the smoke run)."""
    if override:
        return override
    return f"{name}_smoke" if smoke else name


def _taken(spec: SearchSpec) -> None:
    """Refuse (before Ray starts) a new run whose folder already holds a search."""
    run_dir, uri = _run_location(spec)
    if (run_dir / "search.json").exists() or (
            storage.is_remote(uri) and storage.exists(storage.join(uri, "search.json"))):
        raise UserError(f"{uri} already holds a search — continue it with --resume, or pass "
                        "--name NEW_NAME")


def _prepare_run_dir(spec: SearchSpec, base: Config, file: Path, resume: bool) -> tuple[Path, str]:
    run_dir, uri = _run_location(spec)
    meta = run_dir / "search.json"
    if resume:
        if not meta.is_file() and storage.is_remote(uri) and storage.exists(
                storage.join(uri, "search.json")):
            storage.download(uri, run_dir)
        if not meta.is_file():
            raise UserError(f"--resume: {uri} holds no search — start it without --resume")
        old = json.loads(meta.read_text())
        if old["sha256"] != file_sha256(file):
            print(f"note: {file} changed since the run started; continuing the run as started "
                  f"(its copy is {run_dir / 'search.yaml'})")
        return run_dir, uri
    _taken(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "search.yaml", file.read_text())
    info = {"name": spec.name, "source": str(file), "sha256": file_sha256(file),
            "version": __version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "studies": list(studies(spec)), "iterations": trial_iterations(spec, base),
            "final_iterations": final_iterations(spec, base),
            "baseline": baseline_params(spec, base), "seeds": spec.budget.seeds,
            "objective": spec.objective.model_dump(), "spec": spec.model_dump(),
            "base": to_dict(base)}
    atomic_write_text(meta, json.dumps(info, indent=1))
    if storage.is_remote(uri):
        for name in ("search.yaml", "search.json"):
            storage.upload(run_dir / name, storage.join(uri, name))
    return run_dir, uri


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m daso_ray.search",
                                description=command_summary("daso_ray.search"))
    p.add_argument("file", type=Path, help="search-space YAML (see search_spaces/)")
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local one)")
    p.add_argument("--resume", action="store_true", help="continue a killed search")
    p.add_argument("--smoke", action="store_true", help="tiny budget: check the whole path quickly")
    p.add_argument("--name", help="run name (default: the file's name:, + _smoke with --smoke)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local cluster (default: all)")
    p.add_argument("--storage", help="override the file's storage: (a shared dir, or s3://...)")
    return p


def _load(args: argparse.Namespace, address: str | None) -> tuple[SearchSpec, Config]:
    """The search as it will run: the file, its command-line overrides, every check Ray-free."""
    spec, base = load_search(args.file)  # every problem of the file, before Ray starts
    spec = spec.model_copy(update={"name": run_name(spec.name, args.name, args.smoke)})
    if args.storage:
        spec = spec.model_copy(update={"storage": args.storage})
        problems = check_spec(spec, base)
        if problems:
            raise UserError(f"--storage: {problems[0]}")
    if args.smoke:
        spec, base = smoke(spec, base)
    problem = _data_problem(spec, base, remote=bool(address))
    if problem:
        raise UserError(problem)
    return spec, base


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    address = args.address or os.environ.get("RAY_ADDRESS")
    spec, base = _load(args, address)
    if args.resume:  # the run continues exactly as it started
        run_dir, uri = _prepare_run_dir(spec, base, args.file, args.resume)
        info = json.loads((run_dir / "search.json").read_text())
        spec, base = SearchSpec.model_validate(info["spec"]), validate(info["base"])
    else:
        _taken(spec)
    from daso_ray.ray_jobs.cluster import check_fit, connect
    from daso_ray.ray_jobs.tuner import run_studies

    url = connect(address, args.num_cpus)
    # A trial no node can hold would wait for ever; refuse it before the run folder is written.
    check_fit(spec.resources, started_here=not address)
    if not args.resume:
        run_dir, uri = _prepare_run_dir(spec, base, args.file, args.resume)
    print(f"search {spec.name}: results in {uri}" + (f"; Ray dashboard {url}" if url else ""),
          flush=True)
    t0 = time.time()
    try:
        run_studies(spec, _absolute_paths(base), uri, args.resume)
    except KeyboardInterrupt:
        print(f"search {spec.name} interrupted; no finished trial is lost — continue it with:\n  "
              f"{_resume_hint(sys.argv[1:] if argv is None else argv)}", file=sys.stderr,
              flush=True)
        return 130
    _finish(spec, run_dir, uri, args.smoke, t0)
    return 0


def _finish(spec: SearchSpec, run_dir: Path, uri: str, smoke_run: bool, t0: float) -> None:
    """The leaderboard (printed and written), then the next commands to run."""
    if storage.is_remote(uri):  # the leaderboard, export and report read the local mirror
        if (run_dir / "optuna.db").is_file():  # first, so the sync down cannot replace it
            storage.upload(run_dir / "optuna.db", storage.join(uri, "optuna.db"))
        storage.download(uri, run_dir)
    board = leaderboard(run_dir)
    info = json.loads((run_dir / "search.json").read_text())
    print(format_board(board, info), flush=True)
    atomic_write_text(run_dir / "leaderboard.json", json.dumps(slim(board), indent=1))
    if storage.is_remote(uri):
        storage.upload(run_dir / "leaderboard.json", storage.join(uri, "leaderboard.json"))
    failed = [t for b in board.values() for t in b.get("failed", [])]
    if failed and not any(b["finished"] for b in board.values()):  # nothing to verify or export
        raise UserError(f"no trial of {spec.name} finished: {len(failed)} failed, e.g. "
                        f"{failed[0]['trial_id']}: {failed[0]['failed']}")
    rel = os.path.relpath(run_dir)
    shown = rel if not rel.startswith("..") else str(run_dir)  # runnable from here, and readable
    smoke_flag = " --smoke" if smoke_run else ""
    print(f"search wall time {time.time() - t0:.0f} s; next, check the winners against the "
          f"baseline on held-out seeds: python -m daso_ray.verify {shown}{smoke_flag}\nthen "
          f"export: python -m daso_ray.export {shown} --out {shown}/best", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

