"""``python -m daso_ray.verify RUN_DIR [--seeds K] [--smoke] [--address ADDR] [--num-cpus N]``

Checks each study's winner against the baseline on held-out seeds before you adopt it. The search
picked its winner on the seeds and the validation images it measured, so its gain is optimistic.
This trains the winner and the baseline (the base config's own values) again on K new seeds
(100..100+K-1, never the search's), at the exported budget, in parallel on Ray, and compares the
test ``eval/top1_median`` seed by seed (paired Student t interval). Writes ``RUN_DIR/verify.json``
and prints one row per study: adopt, keep_baseline or inconclusive. ``export`` then copies the
verdict into each file's header (and exports the baseline's values when the verdict is
keep_baseline). Finished runs are kept: rerunning trains only what is missing (nothing, once done).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from daso_ray import storage
from daso_ray.cli import summary as command_summary
from daso_ray.errors import UserError, cli_entry
from daso_ray.study import verify as v


def verify(run_dir: Path, seeds: int, smoke: bool = False, address: str | None = None,
           num_cpus: int | None = None) -> dict:
    """Plan, train what is missing, write verify.json; returns its content. UserError: not a run
    directory, no finished trial, a folder of another config, a failed run."""
    from daso_ray.config import validate
    from daso_ray.search import _absolute_paths
    from daso_ray.study.leaderboard import read_meta

    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir}: no such run directory — pass <storage>/<name> of a search")
    # Tasks run on any node, in any working directory: data paths that exist here become absolute.
    plan = v.plan(run_dir, seeds, smoke, _absolute_paths(validate(read_meta(run_dir)["base"])))
    results = v.finished(plan.jobs, run_dir)
    todo = [j for j in plan.jobs if j.name not in results]
    if todo:
        from daso_ray.ray_jobs.verify_runs import train_jobs

        print(f"[verify] training {len(todo)} of {len(plan.jobs)} runs on Ray "
              f"(held-out seeds {plan.seeds[0]}..{plan.seeds[-1]})", flush=True)
        results.update(train_jobs(todo, run_dir, plan.spec.resources, address, num_cpus))
    else:
        print(f"[verify] all {len(plan.jobs)} runs have their results: nothing to train", flush=True)
    report = v.summarize(plan, results, run_dir)
    v.write(run_dir, report)
    return report


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daso_ray.verify",
                                description=command_summary("daso_ray.verify"))
    p.add_argument("run_dir", help="a search run: <storage>/<name> (a directory or s3://...)")
    p.add_argument("--seeds", type=int, help="held-out seeds per winner and baseline (default 5; "
                   "--smoke: 2)")
    p.add_argument("--smoke", action="store_true",
                   help="2 seeds, 2 evaluation periods past the shared steps (DASO's P) per run: a "
                        "quick check of the path")
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local one)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local cluster (default: all)")
    args = p.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else 2 if args.smoke else 5
    if seeds < 2:
        raise UserError(f"--seeds: {seeds} — a paired interval needs at least 2 seeds")
    run_dir = storage.local_run_dir(args.run_dir)  # a storage URI is synced down first
    try:
        report = verify(run_dir, seeds, args.smoke, args.address, args.num_cpus)
    finally:
        if storage.is_remote(args.run_dir):
            _publish(run_dir, args.run_dir)
    print(v.format_table(report))
    return 0


def _publish(run_dir: Path, uri: str) -> None:
    """Copy verify.json and each finished run's results.json + config.yaml to the storage URI
    (also after a failure): verify or export elsewhere sync them down, and nothing is retrained."""
    runs = sorted((run_dir / "verify").glob("*/*/*/results.json"))
    for path in [run_dir / "verify.json", *runs, *(r.with_name("config.yaml") for r in runs)]:
        if path.is_file():
            storage.upload(path, storage.join(uri, *path.relative_to(run_dir).parts))


if __name__ == "__main__":
    raise SystemExit(main())
