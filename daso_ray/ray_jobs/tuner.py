"""Tune over a search spec: OptunaSearch (TPE, seeded, define-by-run) + ASHA, one study per
scenario (``per_scenario``) or one ``robust`` study; resume of a killed search.

Ray's pieces and why (platform.md §3): the Optuna storage is an *instance* (sqlite next to a local
run, a journal file or an RDB URL otherwise) so optuna-dashboard can open it; ASHA runs on the
reported ``step`` so grace/max_t are in training iterations; failed trials restart from their last
checkpoint (``FailureConfig.max_failures``); ``Tuner.restore`` brings back searcher, scheduler and
trials, and on a finished study returns its results without re-running anything.
"""

from __future__ import annotations

import functools
from pathlib import Path

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from daso_ray import storage
from daso_ray.errors import UserError
from daso_ray.ray_jobs.space import SearchSpec, SuggestSpace, objective_names, trial_iterations
from daso_ray.ray_jobs.trial import ddp_trial, single_trial


def studies(spec: SearchSpec) -> dict[str, list]:
    if spec.objective.type == "robust":
        return {"robust": list(spec.scenarios)}
    return {s.name: [s] for s in spec.scenarios}


def make_sampler(spec: SearchSpec) -> optuna.samplers.BaseSampler:
    """TPE (seeded; Optuna 5 defaults: multivariate, constant liar), random, or a full grid."""
    if spec.sampler == "grid":
        grid = {k: list(p.values) for k, p in spec.params.items()}
        return optuna.samplers.GridSampler(grid, seed=spec.sampler_seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.sampler_seed)
    return optuna.samplers.TPESampler(seed=spec.sampler_seed)


def optuna_storage(spec: SearchSpec, run_dir: str):
    """An Optuna storage instance: sqlite in the run dir unless ``optuna_storage`` says. For a
    storage URI the sqlite file lives in the driver's local mirror: only the driver samples."""
    local = storage.mirror_of(run_dir) if storage.is_remote(run_dir) else Path(run_dir)
    url = spec.optuna_storage or f"sqlite:///{local / 'optuna.db'}"
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    return optuna.storages.RDBStorage(url)


def trial_dirname(trial) -> str:
    """Short trial folders (Tune's default repeats every parameter in the name)."""
    return f"trial_{trial.trial_id}"


def _trainable(spec: SearchSpec, base: dict, study: str, scenarios: list, run_dir: str):
    res = spec.resources
    # Each run's files (metrics.jsonl, checkpoints) go straight into the trial's folder of a
    # directory storage, which every node shares. (Tune's get_trial_dir() is a staging folder on
    # the driver, synced only now and then and not at all from other nodes.) With a URI storage
    # they stay on the trial's node; Tune checkpoints and results carry what matters.
    runs_root = None if storage.is_remote(run_dir) else storage.join(run_dir, study)
    if res.mode == "single":
        fn = functools.partial(single_trial, spec=spec, base=base, scenarios=scenarios,
                               runs_root=runs_root)
        return tune.with_resources(fn, {"cpu": res.cpu, "gpu": res.gpu})
    fn = functools.partial(ddp_trial, spec=spec, base=base, scenario=scenarios[0],
                           storage=storage.join(run_dir, "_train"), runs_root=runs_root)
    # The trial actor only drives Train: a sliver of CPU; the workers hold the real resources.
    return tune.with_resources(fn, {"cpu": 0.01})


def _tuner(spec: SearchSpec, base: dict, study: str, scenarios: list, run_dir: str) -> tune.Tuner:
    metrics, modes = objective_names(spec)
    searcher = OptunaSearch(
        space=SuggestSpace(spec), metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0], sampler=make_sampler(spec),
        storage=optuna_storage(spec, run_dir), study_name=f"{spec.name}__{study}")
    scheduler = None
    iters = trial_iterations(spec, base)
    if spec.budget.asha and spec.budget.asha.enabled:
        a = spec.budget.asha
        scheduler = ASHAScheduler(time_attr="step", metric="objective", mode=spec.objective.mode,
                                  max_t=iters, grace_period=a.grace, reduction_factor=a.reduction)
    return tune.Tuner(
        _trainable(spec, base, study, scenarios, run_dir),
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


def run_studies(spec: SearchSpec, base: dict, run_dir: str, resume: bool) -> None:
    """Run (or continue) every study in turn; a finished study is not re-run."""
    for study, scenarios in studies(spec).items():
        path = storage.join(run_dir, study)
        trainable = _trainable(spec, base, study, scenarios, run_dir)
        if resume and tune.Tuner.can_restore(path):
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        elif storage.exists(path):
            raise UserError(f"{path} holds an unfinished study — continue it with --resume")
        else:
            tuner = _tuner(spec, base, study, scenarios, run_dir)
        print(f"== study {study}: {spec.budget.num_samples} trials, scenarios "
              f"{', '.join(s.name for s in scenarios)}", flush=True)
        grid = tuner.fit()
        errors = [r for r in grid if r.error is not None]
        if errors:
            last = [ln for ln in str(errors[0].error).splitlines() if ln.strip()][-1]
            raise UserError(f"study {study}: {len(errors)} trial(s) failed after "
                            f"{spec.budget.max_failures} retries, e.g. {errors[0].path}: {last} — "
                            "fix the cause, then continue with --resume")
