"""A trial's training config: the validated base config + ``set`` + sampled parameters + scenario.

The base arrives as a validated :class:`~daso_ray.config.Config`, so every default (the iteration
count, ``data.num_valid``, ...) has one home, ``daso_ray/config.py``.
"""

from __future__ import annotations

from typing import Any

from daso_ray.config import Config, get_path, set_path, to_dict, validate
from daso_ray.study.spec import Param, Scenario, SearchSpec

# The seeds the search trains are 0..budget.seeds-1; verification starts here, so its seeds are
# never ones the search selected on (budget.seeds <= 99).
HELD_OUT_SEED0 = 100


def run_name(scenario: str, seed: int) -> str:
    """The folder of one (scenario, seed) run: a trial's, a warm-up's, a verification run's."""
    return f"{scenario}__seed{seed}"


def trial_iterations(spec: SearchSpec, base: Config) -> int:
    """Iterations of one trial (ASHA's max_t): ``budget.iterations``, else the base's."""
    return spec.budget.iterations or base.run.iterations


def final_iterations(spec: SearchSpec, base: Config) -> int:
    """The budget exported configs (and verification) train: ``final_iterations``, else the
    trial's — the horizon the search measured, so what it ranked is what the user gets."""
    return spec.final_iterations or trial_iterations(spec, base)


def compose(spec: SearchSpec, base: Config, params: dict[str, Any], scn: Scenario, seed: int,
            iterations: int | None = None) -> Config:
    """The full training config of one (trial params, scenario, seed); ``iterations`` defaults to
    :func:`trial_iterations`. Raises UserError naming the key when the result is not valid."""
    raw = to_dict(base)
    for key, value in params.items():
        set_path(raw, key, value)
    data = raw.setdefault("data", {})
    data.update(scenario=scn.unlabeled, n_max_l=scn.n1, n_max_u=scn.m1, imb_ratio_l=scn.gamma_l,
                imb_ratio_u=1.0 if scn.unlabeled == "uniform" else scn.gamma_u,
                unlabeled_pool=scn.unlabeled_pool, seed_split=seed)
    run = raw.setdefault("run", {})
    run["seed"] = seed
    run["iterations"] = iterations or trial_iterations(spec, base)
    return validate(raw, source=f"{spec.name}/{scn.name}")


def baseline_params(spec: SearchSpec, base: Config) -> dict[str, Any]:
    """The base config's own values of the searched parameters: the study's first trial.
    A conditional parameter is included only when its ``when`` holds for those values."""
    raw = to_dict(base)
    out: dict[str, Any] = {}
    for key, p in spec.params.items():
        if not all(holds(out.get(dep), want) for dep, want in p.when.items()):
            continue
        out[key] = get_path(raw, key)
    return out


def holds(value: Any, want: Any) -> bool:
    """A ``when`` condition: ``want`` is one value or a list of allowed values."""
    return value in want if isinstance(want, list) else value == want


def end_value(p: Param, end: int) -> Any:
    """The low (0) or high (1) end of a domain (the last/first choice)."""
    if p.type == "choice":
        return p.values[-end]
    v = p.high if end else p.low
    return int(v) if p.type == "int" else v
