"""Tune over a search spec: Optuna (TPE, seeded per study, define-by-run) + ASHA, one study per
scenario (``per_scenario``) or one ``robust`` study, every study in flight at once; resume of a
killed search.

Each study's first trial is the baseline: the base config's own values of the searched
parameters (``points_to_evaluate``), so a study's best is never below the starting point on its
own objective. Each study's Tuner runs in its own Ray task (zero CPUs, on the driver's node, where
the Optuna sqlite file and the local run directory are): all studies fill the cluster together,
each with its own searcher, ASHA brackets, ``max_concurrent`` and progress table.

Ray's pieces and why: the Optuna storage is an *instance* (sqlite next to a local
run, a journal file or an RDB URL otherwise) so optuna-dashboard can open it; ASHA runs on the
reported ``step`` so grace/max_t are in training iterations; failed trials restart from their last
checkpoint (``FailureConfig.max_failures``); ``Tuner.restore`` brings back searcher, scheduler and
trials, and on a finished study returns its results without re-running anything.

Ctrl-C: only the driver gets SIGINT (Ray's workers block it), so the driver forwards SIGUSR1 —
Tune's own "stop and save the experiment" signal — to every study task and waits for each to save
its state; the trials cut short stay unfinished in that state and ``--resume`` finishes them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import tempfile
from pathlib import Path

import ray
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from daso_ray import storage
from daso_ray.config import Config
from daso_ray.errors import UserError, error_lines
from daso_ray.ray_jobs.searcher import BaselineASHA, StudySearch
from daso_ray.ray_jobs.trial import ddp_trial, single_trial
from daso_ray.ray_jobs.warmups import Warmups, train_warmups
from daso_ray.study.compose import baseline_params, trial_iterations
from daso_ray.study.objective import objective_names
from daso_ray.study.space import (
    SuggestSpace,
    make_sampler,
    optuna_storage,
    studies,
    study_name,
)
from daso_ray.study.spec import SearchSpec


def trial_dirname(trial) -> str:
    """Short trial folders (Tune's default repeats every parameter in the name)."""
    return f"trial_{trial.trial_id}"


def _trainable(spec: SearchSpec, base: Config, study: str, scenarios: list, run_dir: str,
               warmups: Warmups):
    res = spec.resources
    # Each run's files (metrics.jsonl, checkpoints) go straight into the trial's folder of a
    # directory storage, which every node shares. (Tune's get_trial_dir() is a staging folder on
    # the driver, synced only now and then and not at all from other nodes.) With a URI storage
    # they stay on the trial's node; Tune checkpoints and results carry what matters.
    runs_root = None if storage.is_remote(run_dir) else storage.join(run_dir, study)
    if res.mode == "single":
        fn = functools.partial(single_trial, spec=spec, base=base, scenarios=scenarios,
                               runs_root=runs_root, warmups=warmups)
        return tune.with_resources(_named(fn, study), {"cpu": res.cpu, "gpu": res.gpu})
    fn = functools.partial(ddp_trial, spec=spec, base=base, scenario=scenarios[0],
                           storage=storage.join(run_dir, "_train"), runs_root=runs_root)
    # The trial actor only drives Train: a sliver of CPU; the workers hold the real resources.
    return tune.with_resources(_named(fn, study), {"cpu": 0.01})


def _named(fn: functools.partial, study: str):
    """The trainable under a name of its own. Tune registers trainables by name in the job's
    key-value store, and the studies of a search run in one job: under one shared name
    ("single_trial") the last study's registration — its scenario, its folders — would serve
    every study's trials."""
    def trainable(config: dict) -> None:
        return fn(config)

    trainable.__name__ = trainable.__qualname__ = f"{fn.func.__name__}_{study}"
    return trainable


def _tuner(spec: SearchSpec, base: Config, study: str, scenarios: list, run_dir: str,
           warmups: Warmups) -> tune.Tuner:
    metrics, modes = objective_names(spec.objective)
    iters, baseline = trial_iterations(spec, base), baseline_params(spec, base)
    searcher = StudySearch(
        space=SuggestSpace(spec), metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0], sampler=make_sampler(spec, study),
        storage=optuna_storage(spec, run_dir), study_name=study_name(spec, study),
        points_to_evaluate=[baseline], max_t=iters)
    scheduler = None
    if spec.budget.asha and spec.budget.asha.enabled:
        a = spec.budget.asha
        scheduler = BaselineASHA(time_attr="step", metric="objective", mode=spec.objective.mode,
                                 max_t=iters, grace_period=a.grace, reduction_factor=a.reduction,
                                 baseline=baseline, study_dir=None if storage.is_remote(run_dir)
                                 else storage.join(run_dir, study))
    return tune.Tuner(
        _trainable(spec, base, study, scenarios, run_dir, warmups),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=spec.budget.num_samples,
                                    max_concurrent_trials=spec.budget.max_concurrent,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=study, storage_path=run_dir,
            failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=1,  # tables only
            progress_reporter=tune.CLIReporter(
                metric_columns=["step", "objective"], max_report_frequency=30)))


def run_studies(spec: SearchSpec, base: Config, run_dir: str, resume: bool) -> None:
    """Run (or continue) every study at once; a finished study is not re-run. Raises UserError
    naming each study whose trials failed after their retries."""
    todo = studies(spec)
    for study in todo:
        path = storage.join(run_dir, study)
        if not (resume and tune.Tuner.can_restore(path)) and storage.exists(path):
            raise UserError(f"{path} holds an unfinished study — continue it with --resume")
    # Create the Optuna storage (its schema) here, once: studies opening a fresh sqlite file at
    # the same moment race to stamp its schema version and one of them fails.
    optuna_storage(spec, run_dir)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    task = ray.remote(num_cpus=0, max_retries=0)(run_study)
    # Named tasks: Ray prefixes each study's progress table with "(study_<name> pid=...)".
    # The tasks run on this node: each leaves its pid here, for a Ctrl-C to reach it.
    pid_dir = tempfile.mkdtemp(prefix="daso_studies_")
    try:
        refs = [task.options(scheduling_strategy=here, name=f"study_{study}")
                .remote(spec, base, study, scns, run_dir, resume, pid_dir)
                for study, scns in todo.items()]
        try:
            problems = [line for lines in ray.get(refs) for line in lines]
        except KeyboardInterrupt:
            _stop_studies(refs, pid_dir)
            raise
    finally:
        shutil.rmtree(pid_dir, ignore_errors=True)
    if problems:
        raise UserError("\n".join(problems))


STOP_WAIT_S = 120  # how long a Ctrl-C waits for the studies to save their state


def _stop_studies(refs: list, pid_dir: str) -> None:
    """Ask every study task to stop and save (SIGUSR1), and wait for them; a second Ctrl-C
    stops waiting (the saved state is then the last periodic one, as after a killed driver)."""
    print(f"interrupted: stopping {len(refs)} studies and saving their state (up to "
          f"{STOP_WAIT_S} s; Ctrl-C again to quit at once)", flush=True)
    # A study that already ended is skipped; one too new to have left its pid ends with the
    # driver, like a killed driver's (its last periodic state is what --resume continues).
    for pid_file in Path(pid_dir).glob("*.pid"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGUSR1)
    ray.wait(refs, num_returns=len(refs), timeout=STOP_WAIT_S)


def run_study(spec: SearchSpec, base: Config, study: str, scenarios: list, run_dir: str,
              resume: bool, pid_dir: str | None = None) -> list[str]:
    """One study's Tuner, new or restored, run to the end; one line per failed trial group.
    ``pid_dir``: where this task's pid goes, so the driver can stop it (see :func:`_stop_studies`)."""
    stop = []
    if pid_dir:
        # SIGUSR1's default action kills the process: until Tune installs its own handler (its
        # "stop and save"), note the request instead and do not start the study.
        signal.signal(signal.SIGUSR1, lambda *_: stop.append(True))
        Path(pid_dir, f"{study}.pid").write_text(str(os.getpid()))
    path = storage.join(run_dir, study)
    # The study's first tasks: its shared warm-ups (reused when --resume finds them finished).
    warmups = {} if stop else train_warmups(spec, base, study, scenarios, run_dir)
    trainable = _trainable(spec, base, study, scenarios, run_dir, warmups)
    if resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        tuner = _tuner(spec, base, study, scenarios, run_dir, warmups)
    print(f"== study {study}: {spec.budget.num_samples} trials (the first is the baseline), "
          f"scenarios {', '.join(s.name for s in scenarios)}", flush=True)
    if stop:
        return []
    grid = tuner.fit()
    errors = [r for r in grid if r.error is not None]
    if not errors:
        return []
    last = error_lines(errors[0].error)[-1]
    return [f"study {study}: {len(errors)} trial(s) failed after {spec.budget.max_failures} "
            f"retries, e.g. {errors[0].path}: {last} — fix the cause, then continue with --resume"]
