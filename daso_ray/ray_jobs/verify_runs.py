"""Held-out verification runs on Ray (``python -m daso_ray.verify``): one Ray task per
(study, role, scenario, seed), all in flight at once, each the one training loop
(:func:`daso_ray.train.run_one`) in its own folder ``RUN_DIR/verify/<study>/<role>/<scenario>__seed<S>/``.

No finished result is lost: a job with ``results.json`` is never submitted, a job with a
checkpoint resumes from its newest one, and the driver keeps a copy of every result it receives
(on a cluster without a shared filesystem the task wrote it on another node).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import ray

from daso_ray.config import from_dict, to_dict
from daso_ray.engine.warmup import shared_warmup
from daso_ray.errors import UserError, error_lines
from daso_ray.files import atomic_write_text
from daso_ray.ray_jobs.cluster import check_fit, connect
from daso_ray.ray_jobs.warmups import warmup_task
from daso_ray.study.compose import run_name
from daso_ray.study.spec import Resources
from daso_ray.study.verify import METRIC, Job, state


def _train(config: dict, out: str, cpu: float, warmup: str | None = None) -> dict:
    """Ray task body: train (or finish) one run; its results.json content. ``warmup``: the
    checkpoint of the shared warm-up a fresh run forks from."""
    import torch

    from daso_ray.engine import checkpoint
    from daso_ray.train import run_one

    torch.set_num_threads(max(1, int(cpu)))  # as many threads as CPUs reserved: no oversubscription
    out_dir = Path(out)
    if (out_dir / "results.json").is_file():  # finished on this node already (a retried task)
        return json.loads((out_dir / "results.json").read_text())
    resume = out_dir if checkpoint.latest(out_dir) else None
    if resume is None:  # killed before its first checkpoint: its metric lines restart with it
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)
    cfg, name = from_dict(config), "/".join(out_dir.parts[-3:])

    def report(m: dict, ckpt: str | None) -> None:  # one short line per evaluation
        print(f"[{name}] {m['step']}/{cfg.run.iterations} eval/top1 {m['eval/top1']:.2f}", flush=True)

    return run_one(cfg, out_dir, resume=resume, report=report,
                   warmup=Path(warmup) if warmup and resume is None else None)


def train_jobs(jobs: list[Job], run_dir: Path, resources: Resources, address: str | None = None,
               num_cpus: int | None = None) -> dict[str, dict]:
    """Train every job not yet finished, in parallel; {job name: its results.json content}.

    Each task reserves ``resources.cpu`` CPUs and ``resources.gpu`` GPUs (a trial's share).
    Raises UserError, one line per failed job naming it and its folder, once every other job has
    finished (so a rerun only trains the failed ones).
    """
    if not ray.is_initialized():  # the pipeline has joined the cluster for its search already
        connect(address, num_cpus)
    # Each run is one task with a single trial's share: refuse one no node can ever hold.
    check_fit(resources.model_copy(update={"mode": "single", "workers": 1}),
              started_here=not (address or os.environ.get("RAY_ADDRESS")))
    # max_retries: a lost worker (node gone, OOM kill) retries the task, which resumes from its
    # newest checkpoint; an exception in training is not retried (it would fail the same way).
    task = ray.remote(num_cpus=resources.cpu, num_gpus=resources.gpu, max_retries=2)(_train)
    states = {j.name: state(j, run_dir) for j in jobs}  # each job's folder read once
    todo = [j for j in jobs if states[j.name] != "done"]
    warm = _warmups([j for j in todo if states[j.name] == "new"], run_dir, resources)
    refs = {task.options(name=f"verify:{j.name}").remote(to_dict(j.cfg), str(j.dir(run_dir)),
                                                         resources.cpu, warm.get(j.name)): j
            for j in todo}
    results, failed, pending = {}, [], list(refs)
    while pending:
        (ref,), pending = ray.wait(pending, num_returns=1)
        job = refs[ref]
        try:
            res = ray.get(ref)
        except ray.exceptions.RayError as err:
            last = error_lines(err)
            why = last[-1].strip().removeprefix("daso_ray.errors.UserError: ")
            failed.append(f"verify run {job.name} failed ({why}) — see "
                          f"{job.dir(run_dir)}; fix the cause and rerun verify (finished runs are kept)")
            continue
        results[job.name] = res
        _keep(job.dir(run_dir) / "results.json", res)
        print(f"[verify] {len(results)}/{len(todo)} {job.name}: {METRIC} "
              f"{res.get(METRIC, float('nan')):.2f}", flush=True)
    if failed:
        raise UserError("\n".join(sorted(failed)))
    return results


def _warmups(fresh: list[Job], run_dir: Path, resources: Resources) -> dict:
    """{job name: the ObjectRef of its shared warm-up's checkpoint}: one warm-up task per
    (study, scenario, seed) whose fresh baseline and winner runs can both fork from it (their
    tasks wait for it); runs that cannot share train from step 0."""
    groups: dict[tuple, list[Job]] = {}
    for j in fresh:
        groups.setdefault((j.study, j.scenario, j.seed), []).append(j)
    task = ray.remote(num_cpus=resources.cpu, num_gpus=resources.gpu, max_retries=2)(warmup_task)
    out = {}
    for (study, scn, seed), group in groups.items():
        warm = shared_warmup([j.cfg for j in group]) if len(group) > 1 else None
        if warm is None:
            continue
        name = f"{study}/warmup/{run_name(scn, seed)}"
        ref = task.options(name=f"verify:{name}").remote(
            to_dict(warm), str(Path(run_dir).resolve() / "verify" / name), resources.cpu)
        out.update({j.name: ref for j in group})
    if out:
        print(f"[verify] {len(set(out.values()))} shared warm-up(s): each baseline/winner pair "
              "trains its common first iterations once", flush=True)
    return out


def _keep(path: Path, res: dict) -> None:
    """The driver's copy of a result, unless the task wrote it here (a shared or local dir)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(res, indent=1))
