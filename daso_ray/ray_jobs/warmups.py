"""Shared warm-ups on the cluster (issue 16): the first tasks of a study train, once per
(scenario, seed), the iterations every trial of the study computes alike
(:mod:`daso_ray.engine.warmup`); the study's trials then fork from them.

Each warm-up is one Ray task with a trial's resources, all in flight at once, in
``<run_dir>/<study>/warmup/<scenario>__seed<S>/``. A finished one (its marker written last) is
reused by ``--resume``, an unfinished one resumed from its checkpoints. Nothing here can fail a
search: a study without a usable warm-up says why and its trials train from step 0, as before.
"""

from __future__ import annotations

from pathlib import Path

import ray

from daso_ray import storage
from daso_ray.config import Config, from_dict, to_dict
from daso_ray.engine.warmup import finished, shared_steps
from daso_ray.errors import error_lines
from daso_ray.study.compose import run_name
from daso_ray.study.spec import Scenario, SearchSpec
from daso_ray.study.warmup import warmup_for

Warmups = dict[tuple[str, int], tuple[dict, str]]  # (scenario, seed) -> (its config, checkpoint)


def warmup_task(config: dict, out: str, cpu: float) -> str:
    """Ray task body: the warm-up's checkpoint directory (trained now, resumed or reused)."""
    import torch

    from daso_ray.engine.warmup import train_warmup

    torch.set_num_threads(max(1, int(cpu)))
    return str(train_warmup(from_dict(config), Path(out)))


def train_warmups(spec: SearchSpec, base: Config, study: str, scenarios: list[Scenario],
                  run_dir: str) -> Warmups:
    """Train a study's warm-ups; {(scenario, seed): (warm-up config, checkpoint dir)}, or {} (and
    one line saying why) when its trials cannot share one."""
    if storage.is_remote(run_dir):
        return _from_step_0(study, "no shared warm-up: a URI storage is not a folder every node "
                                   "reads")
    plans = {}
    for scn in scenarios:
        for seed in range(spec.budget.seeds):
            cfg, why = warmup_for(spec, base, scn, seed)
            if cfg is None:
                return _from_step_0(study, f"no shared warm-up: {why}")
            plans[(scn.name, seed)] = cfg
    res, root = spec.resources, Path(run_dir) / study / "warmup"
    folders = {key: root / run_name(*key) for key in plans}
    reused = sum(finished(folders[key], cfg) is not None for key, cfg in plans.items())
    task = ray.remote(num_cpus=res.cpu, num_gpus=res.gpu, max_retries=2)(warmup_task)
    refs = {key: task.options(name=f"warmup:{study}:{run_name(*key)}").remote(
        to_dict(cfg), str(folders[key]), res.cpu) for key, cfg in plans.items()}
    try:
        done = {key: (to_dict(plans[key]), ray.get(ref)) for key, ref in refs.items()}
    except ray.exceptions.RayError as err:
        return _from_step_0(study, f"the shared warm-up failed: {error_lines(err)[-1].strip()}")
    steps = shared_steps(next(iter(plans.values())))
    print(f"== study {study}: {len(done)} shared warm-up(s) to iteration {steps} ready in {root} "
          f"({reused} reused, {len(done) - reused} trained); every trial forks from them",
          flush=True)
    return done


def _from_step_0(study: str, why: str) -> Warmups:
    print(f"== study {study}: every trial trains from step 0 — {why}", flush=True)
    return {}
