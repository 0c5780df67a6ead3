"""The Optuna side of a study, without Ray: the define-by-run space, the sampler, the storage.

A study is one scenario (``objective.type: per_scenario``) or every scenario (``robust``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import optuna

from daso_ray import storage
from daso_ray.study.compose import holds
from daso_ray.study.spec import Param, SearchSpec


def studies(spec: SearchSpec) -> dict[str, list]:
    """{study name: its scenarios}, in the file's order."""
    if spec.objective.type == "robust":
        return {"robust": list(spec.scenarios)}
    return {s.name: [s] for s in spec.scenarios}


def study_seed(spec: SearchSpec, study: str) -> int:
    """The sampler seed of one study: derived from ``sampler_seed`` and the study's name, so the
    studies of a search explore different points (``shared_samples: true``: all the same)."""
    if spec.shared_samples:
        return spec.sampler_seed
    digest = hashlib.sha256(f"{spec.sampler_seed}/{study}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def n_startup_trials(spec: SearchSpec) -> int:
    """TPE's random start-up trials, sized to the budget (the baseline counts among them)."""
    n = spec.budget.n_startup_trials
    return max(3, spec.budget.num_samples // 4) if n is None else n


def make_sampler(spec: SearchSpec, study: str) -> optuna.samplers.BaseSampler:
    """TPE (seeded per study; Optuna 5 defaults: multivariate, constant liar), random, or grid."""
    seed = study_seed(spec, study)
    if spec.sampler == "grid":
        grid = {k: list(p.values) for k, p in spec.params.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials(spec))


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


def study_name(spec: SearchSpec, study: str) -> str:
    """The Optuna study's name in the storage (what optuna-dashboard lists)."""
    return f"{spec.name}__{study}"


class SuggestSpace:
    """Optuna define-by-run space (picklable: the searcher is saved with the experiment).
    Conditional parameters are sampled only when their ``when`` holds, so TPE never models a
    parameter that had no effect."""

    def __init__(self, spec: SearchSpec):
        self.spec = spec

    def __call__(self, trial) -> None:
        chosen: dict[str, Any] = {}
        for key, p in self.spec.params.items():
            if not all(holds(chosen.get(dep), want) for dep, want in p.when.items()):
                continue
            chosen[key] = _suggest(trial, key, p)


def _suggest(trial, key: str, p: Param) -> Any:
    if p.type == "choice":
        return trial.suggest_categorical(key, p.values)
    if p.type == "int":
        return trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)


def distribution(p: Param | dict):
    """The Optuna distribution ``_suggest`` samples from (for importance over stored trials)."""
    import optuna.distributions as od

    p = Param.model_validate(p) if isinstance(p, dict) else p
    if p.type == "choice":
        return od.CategoricalDistribution(p.values)
    if p.type == "int":
        return od.IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return od.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
