"""Which shared warm-up a study trains, per (scenario, seed), and when it has none (issue 16).

A warm-up serves every trial of a study only when the study searches nothing but its algorithm's
fork keys (DASO: T_proto, L, lambda_align, the m-hat period, T_dist, the blend switch and alpha):
then every trial computes the same first ``shared_steps`` iterations. Its config is the baseline
trial's, with the superset state that serves the largest value of each searched key.
"""

from __future__ import annotations

from daso_ray.config import Config
from daso_ray.engine.warmup import fork_problem, shared_steps, warmup_config
from daso_ray.registry import algorithms
from daso_ray.study.compose import baseline_params, compose
from daso_ray.study.spec import Scenario, SearchSpec


def warmup_for(spec: SearchSpec, base: Config, scn: Scenario, seed: int,
               iterations: int | None = None) -> tuple[Config | None, str]:
    """(the warm-up config of ``scn`` and ``seed``, "") or (None, why the study has none)."""
    if not spec.budget.share_warmup:
        return None, "budget.share_warmup is false"
    if spec.resources.mode == "ddp":
        return None, "ddp trials train from scratch (each rank's m-hat window is its own)"
    params = baseline_params(spec, base)
    baseline = compose(spec, base, params, scn, seed, iterations)
    if shared_steps(baseline) <= 0:
        return None, f"{baseline.algorithm.name} with these settings shares no steps"
    keys = algorithms()[baseline.algorithm.name].fork_keys
    other = [k for k in spec.params if k not in keys]
    if other:
        return None, (f"the study searches {', '.join(other)}, which changes the steps before "
                      f"{shared_steps(baseline)}")
    domains = {k: list(p.values) if p.type == "choice" else [p.low, p.high]
               for k, p in spec.params.items()}
    warm = warmup_config(baseline, domains)
    problem = fork_problem(baseline, warm)  # the rule every trial meets again when it starts
    return (None, problem) if problem else (warm, "")
