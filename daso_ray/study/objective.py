"""The metric contract of a trial: which metrics reach Tune, and how one trial's runs — one per
(scenario, seed) — become the objective the searcher, ASHA and the leaderboard see.

One function, :func:`aggregate`, serves every trial mode (``single`` and ``ddp``), so both report
the same names: ``<scenario>/<metric>`` (mean over seeds), ``objective`` (and ``objective_<i>``
for extra objectives) and ``objective_stderr``, the objective's standard error over seeds.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Literal

from pydantic import Field

from daso_ray.config import Strict
from daso_ray.metrics import CONFUSION_KEY, RECALL_KEYS, TUNE_KEYS, VALID_MEDIAN


class ExtraObjective(Strict):
    metric: str
    mode: Literal["max", "min"] = "max"


class Objective(Strict):
    type: Literal["per_scenario", "robust"] = "per_scenario"
    metric: str = VALID_MEDIAN
    mode: Literal["max", "min"] = "max"
    aggregate: Literal["mean", "worst"] = "mean"  # robust: over scenarios
    extra: list[ExtraObjective] = []  # more objectives -> a multi-objective (Pareto) study
    # Largest step (points) one validation image may move a valid/ metric: 100 / data.num_valid.
    # A coarser objective cannot rank trials (ties everywhere), so the file is refused.
    min_resolution: float = Field(0.5, gt=0)

    def targets(self) -> list[tuple[str, str, str]]:
        """(the key naming it in a search file, metric, mode) of the objective, then each extra."""
        return [("objective.metric", self.metric, self.mode)] + [
            (f"objective.extra.{i}.metric", e.metric, e.mode) for i, e in enumerate(self.extra)]


def aggregate(objective: Objective, per_run: dict[tuple[str, int], dict], step: int) -> dict:
    """Tune metrics of one trial from each (scenario, seed)'s latest metrics.

    ``per_run``: {(scenario, seed): that run's metrics dict at ``step``}. Returns ``step``,
    ``<scenario>/<key>`` (mean over seeds), per-class lists (mean over seeds), ``objective`` (mean
    or worst over scenarios of the per-scenario mean), ``objective_<i>`` for extra objectives and
    ``objective_stderr`` (NaN with one seed): the standard error of ``objective`` over seeds
    (mean: sqrt(sum of the scenarios' squared errors) / scenarios; worst: the worst scenario's).
    """
    # timesteps_total: Tune's TensorBoard logger takes it as the x-axis (else the report count).
    out: dict[str, Any] = {"step": step, "timesteps_total": step}
    scenarios = sorted({s for s, _ in per_run})
    for scn in scenarios:
        runs = [m for (s, _), m in per_run.items() if s == scn]
        for key in {k for m in runs for k in m if k in TUNE_KEYS or k.startswith("train/loss")}:
            out[f"{scn}/{key}"] = statistics.fmean(m[key] for m in runs if key in m)
        lists = {}
        for key in RECALL_KEYS:
            rows = [m[key] for m in runs if key in m]
            if rows:
                lists[key] = [round(statistics.fmean(c), 3) for c in zip(*rows, strict=True)]
        mats = [m[CONFUSION_KEY] for m in runs if CONFUSION_KEY in m]
        if mats:
            lists[CONFUSION_KEY] = [tuple(sum(c) for c in zip(*rows, strict=True))
                                    for rows in zip(*mats, strict=True)]
        # One scalar per class for dashboards; the lists themselves go as tuples, which Tune's
        # TensorBoard logger skips (a list becomes a histogram that loses which class is which)
        # while result.json still holds them as lists for the leaderboard and the report.
        out.update({f"{scn}/{k}": v for k, v in per_class_scalars(lists).items()})
        out.update({f"{scn}/{k}": tuple(v) for k, v in lists.items()})
    for i, (_, metric, mode) in enumerate(objective.targets()):
        means = [out.get(f"{scn}/{metric}", math.nan) for scn in scenarios]
        errs = [stderr([m[metric] for (s, _), m in per_run.items() if s == scn and metric in m])
                for scn in scenarios]
        if objective.aggregate == "worst":
            pick = (min if mode == "max" else max)(range(len(means)), key=lambda j: means[j])
            value, err = means[pick], errs[pick]
        else:
            value = statistics.fmean(means)
            err = math.sqrt(sum(e * e for e in errs)) / len(errs)
        out["objective" if i == 0 else f"objective_{i}"] = value
        if i == 0:
            out["objective_stderr"] = err
    return out


def per_class_scalars(metrics: dict) -> dict:
    """Each ``<prefix>/per_class_recall`` list as one scalar per class,
    ``<prefix>/recall/class_<k>`` (zero-padded, so dashboards sort them in class order).

    For loggers that turn a list into a histogram (Ray Tune's TensorBoard logger does), which
    loses which class is which; scalars keep one curve per class.
    """
    out = {}
    for key, values in metrics.items():
        if key.endswith("/per_class_recall") and isinstance(values, list | tuple):
            prefix, width = key.rsplit("/", 1)[0], len(str(max(len(values) - 1, 0)))
            out.update({f"{prefix}/recall/class_{k:0{width}d}": float(v)
                        for k, v in enumerate(values)})
    return out


def stderr(values: list[float]) -> float:
    """Standard error of the mean (sample std / sqrt(n)); NaN for fewer than 2 values."""
    if len(values) < 2:
        return math.nan
    return statistics.stdev(values) / math.sqrt(len(values))


def objective_names(objective: Objective) -> tuple[list[str], list[str]]:
    """(metrics, modes) reported to the searcher; the first one drives ASHA and the leaderboard."""
    modes = [mode for _, _, mode in objective.targets()]
    return ["objective", *[f"objective_{i}" for i in range(1, len(modes))]], modes


def is_finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)
