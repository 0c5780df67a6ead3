"""Trial drivers: what one Tune trial runs — the one training loop, never a copy of it.

- :func:`single_trial` (``resources.mode: single``): one process. It trains every (scenario, seed)
  of the trial in lockstep, one evaluation window at a time, and reports the aggregated objective
  after each window, so ASHA can compare trials at equal iterations (``time_attr: step``).
- :func:`ddp_trial` (``resources.mode: ddp``): the Tune function acts as the Ray Train driver and
  runs a ``TorchTrainer`` of ``resources.workers`` workers (Ray's Train-inside-Tune pattern: the
  Train run's metrics reach Tune through ``TuneReportCallback``).

A trial of either mode that fails for a deterministic cause (a
:class:`~daso_ray.errors.UserError`, such as a non-finite loss — in a ddp trial raised in the
Train workers and wrapped by Ray, see :func:`~daso_ray.errors.deterministic_cause`) does not
raise: a retry would fail the same way, and a raised error fails the study and every
``--resume``. It reports one last result carrying ``failed`` (the one-line reason) and returns;
:class:`~daso_ray.ray_jobs.searcher.StudySearch` files it FAIL and the leaderboard lists it. Only
other errors (a killed worker, a lost node) reach Tune's retries.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import torch
from ray import tune

from daso_ray.config import Config, from_dict, to_dict
from daso_ray.engine.loop import Trainer
from daso_ray.engine.warmup import fork, fork_problem
from daso_ray.errors import deterministic_cause, error_lines
from daso_ray.ray_jobs.warmups import Warmups
from daso_ray.study.compose import compose, run_name
from daso_ray.study.objective import aggregate, objective_names
from daso_ray.study.spec import Scenario, SearchSpec


def _runs_dir(runs_root: str | None) -> Path:
    """Where a trial's runs write: ``<runs_root>/trial_<id>/runs`` (shared storage) or Tune's
    local trial folder."""
    ctx = tune.get_context()
    root = Path(runs_root) / f"trial_{ctx.get_trial_id()}" if runs_root else Path(ctx.get_trial_dir())
    return root / "runs"


def single_trial(config: dict, spec: SearchSpec, base: Config, scenarios: list[Scenario],
                 runs_root: str | None = None, warmups: Warmups | None = None) -> None:
    """Tune function trainable; ``config`` holds the sampled parameters by config path.
    ``warmups``: the study's shared warm-ups, which a fresh run forks from where it can."""
    torch.set_num_threads(max(1, int(spec.resources.cpu)))
    where = {"run": None, "step": 0}  # which run was training, and the last reported step
    with _failing_for_good(spec, where):
        _train(config, spec, base, scenarios, _runs_dir(runs_root), where, warmups or {})


@contextlib.contextmanager
def _failing_for_good(spec: SearchSpec, where: dict):
    """A deterministic failure in the block becomes the trial's failed result, named after the
    run it happened in (``where``); any other error goes on to Tune's retries."""
    try:
        yield
    except Exception as err:
        cause = deterministic_cause(err)
        if cause is None:
            raise
        run = f"{_run_name(where['run'])}: " if where["run"] else ""
        # A Train worker's error carries the step that worker last reported (worker.py).
        step = getattr(cause, "reported_step", where["step"])
        tune.report(failed_result(spec, step, run + error_lines(cause)[0]))


def failed_result(spec: SearchSpec, step: int, reason: str) -> dict:
    """The last result of a trial that failed for a deterministic cause. Every objective is
    present (Tune refuses a result without the searcher's metric) and NaN (nothing ranks it);
    ``step`` is the last reported one, so ASHA records no rung value for it."""
    metrics, _ = objective_names(spec.objective)
    return {"step": step, "timesteps_total": step, "failed": reason,
            **{m: float("nan") for m in metrics}}


def _train(config: dict, spec: SearchSpec, base: Config, scenarios: list[Scenario], runs: Path,
           where: dict, warmups: Warmups) -> None:
    latest: dict[tuple[str, int], dict] = {}
    saved: dict[tuple[str, int], str] = {}
    trainers = {}
    for scn in scenarios:
        for seed in range(spec.budget.seeds):
            key = where["run"] = (scn.name, seed)
            cfg = compose(spec, base, config, scn, seed)

            def report(m, ckpt, key=key):
                latest[key] = m
                if ckpt:
                    saved[key] = ckpt

            trainers[key] = Trainer(cfg, runs / _run_name(key), report)
    where["run"] = None
    if not _restore(trainers):
        _fork(trainers, warmups, spec, latest)
    first = next(iter(trainers.values()))
    period, iters = first.cfg.run.eval_period, first.cfg.run.iterations
    step = where["step"] = min(tr.step for tr in trainers.values())
    while step < iters:
        step = min((step // period + 1) * period, iters)
        saved.clear()
        for key, tr in trainers.items():
            where["run"] = key
            tr.advance(step)
        where["run"] = None
        ckpt = _tune_checkpoint(runs, saved) if len(saved) == len(trainers) else None
        try:
            tune.report(aggregate(spec.objective, latest, step), checkpoint=ckpt)
        finally:
            if ckpt is not None:
                shutil.rmtree(ckpt.path, ignore_errors=True)
        where["step"] = step


def _run_name(key: tuple[str, int]) -> str:
    return run_name(*key)


def _restore(trainers: dict) -> bool:
    """A retried trial continues every run from the trial's last Tune checkpoint; False when
    there is none (a first attempt, or a retry that died before its first checkpoint)."""
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        for tr in trainers.values():
            (tr.run_dir / "metrics.jsonl").unlink(missing_ok=True)
        return False
    with ckpt.as_directory() as d:
        for key, tr in trainers.items():
            tr.resume(Path(d) / _run_name(key))
    return True


def _fork(trainers: dict, warmups: Warmups, spec: SearchSpec, latest: dict) -> None:
    """Start every fresh run that can from its shared warm-up (all of them or none, so the runs
    stay in lockstep), then report the warm-up's evaluations as this trial's own: the trial's
    record (Tune, Optuna, ASHA) is the one training from scratch would give."""
    problems = []
    for key, tr in trainers.items():
        warm = warmups.get(key)
        problem = "no shared warm-up" if warm is None else fork_problem(tr.cfg, from_dict(warm[0]))
        if problem:
            problems.append(f"{_run_name(key)}: {problem}")
    if problems:
        if warmups:
            print(f"this trial trains from step 0 — {problems[0]}", flush=True)
        return
    for key, tr in trainers.items():
        fork(tr, Path(warmups[key][1]))
    lines = {key: {m["step"]: m for m in tr.files.lines()} for key, tr in trainers.items()}
    for step in sorted(set.intersection(*(set(m) for m in lines.values()))):
        latest.update({key: m[step] for key, m in lines.items()})
        tune.report(aggregate(spec.objective, latest, step))



def _tune_checkpoint(runs: Path, saved: dict) -> tune.Checkpoint:
    """One directory with every run's ``state.pt`` (hard links where possible); Tune copies it
    into the trial's storage before ``report`` returns, so the staging dir is removed after."""
    stage = Path(tempfile.mkdtemp(prefix=".tune_ckpt_", dir=runs))  # beside state.pt: hard links
    for key, src in saved.items():
        dst = stage / _run_name(key)
        dst.mkdir()
        try:
            os.link(Path(src) / "state.pt", dst / "state.pt")
        except OSError:
            shutil.copy2(Path(src) / "state.pt", dst / "state.pt")
    return tune.Checkpoint.from_directory(str(stage))


def ddp_trial(config: dict, spec: SearchSpec, base: Config, scenario: Scenario, storage: str,
              runs_root: str | None = None) -> None:
    """Tune function trainable that drives one Ray Train run (W DDP workers) for one scenario.

    Train itself never retries (``max_failures=0``): a deterministic failure would only repeat,
    and any other is retried by Tune, whose new attempt resumes the same Train run (its name is
    the trial's) from its checkpoints."""
    from daso_ray.ray_jobs.worker import fit_distributed

    where = {"run": (scenario.name, 0), "step": 0}
    tid = tune.get_context().get_trial_id()
    res = spec.resources
    with _failing_for_good(spec, where):
        cfg = compose(spec, base, config, scenario, seed=0)
        fit_distributed(to_dict(cfg), str(_runs_dir(runs_root) / _run_name(where["run"])),
                        workers=res.workers, gpu=res.gpu > 0, cpu=res.cpu, name=f"train-{tid}",
                        storage=storage, scenario=scenario.name,
                        objective=spec.objective.model_dump(), in_tune=True, max_failures=0)
