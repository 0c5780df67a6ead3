"""Search files: YAML -> validated :class:`SearchSpec` -> Optuna define-by-run space -> configs.

Everything here runs before Ray starts: a broken file gives one line per problem, each naming the
key (``params.algorithm.daso.t_proto.low``, ``scenarios``, ...), and no cluster is touched. The
format is documented in README.md ("Search-space files"); ``search_spaces/`` holds examples.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from daso_ray.config import Config, Strict, describe_error, read_yaml, validate
from daso_ray.errors import UserError

# Scalars forwarded to Tune per scenario, hence the possible objectives (the rest of the metrics
# stays in each run's metrics.jsonl).
TUNE_KEYS = tuple(f"{split}/{m}" for split in ("eval", "valid") for m in (
    "top1", "top1_median20", "balanced_acc", "gmean_recall", "head_acc", "medium_acc", "tail_acc"))
TUNE_KEYS += ("train/loss", "train/mask_ratio", "perf/img_per_s")
# Lists reported beside the scalars (per-class recall is averaged over seeds; counts are equal).
RECALL_KEYS = ("eval/per_class_recall", "valid/per_class_recall", "data/labeled_counts")


class Param(Strict):
    type: Literal["float", "int", "choice"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    values: list[Any] | None = None
    when: dict[str, Any] = {}  # {other.param.path: value or [values]}: sampled only then

    @model_validator(mode="after")
    def _domain(self) -> Param:
        if self.type == "choice":
            if not self.values:
                raise ValueError("values: a choice needs a non-empty list, e.g. values: [50, 100]")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"low/high: a {self.type} parameter needs both, e.g. low: 0.1, high: 1")
        if self.low >= self.high:
            raise ValueError(f"low: {self.low} >= high: {self.high} — the range is inverted or empty")
        if self.log and self.low <= 0:
            raise ValueError(f"low: {self.low} — a log domain needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("step: not allowed together with log: true")
        return self


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    unlabeled: Literal["consistent", "uniform", "reversed"] = "consistent"
    n1: int = Field(ge=1)  # N_1 -> data.n_max_l
    m1: int | None = Field(None, ge=1)  # M_1 -> data.n_max_u (null: every unlabeled image)
    gamma_l: float = Field(ge=1.0)
    gamma_u: float = Field(1.0, ge=1.0)
    unlabeled_pool: Literal["in", "in+out"] = "in"


class ExtraObjective(Strict):
    metric: str
    mode: Literal["max", "min"] = "max"


class Objective(Strict):
    type: Literal["per_scenario", "robust"] = "per_scenario"
    metric: str = "valid/top1_median20"
    mode: Literal["max", "min"] = "max"
    aggregate: Literal["mean", "worst"] = "mean"  # robust: over scenarios
    extra: list[ExtraObjective] = []  # more objectives -> a multi-objective (Pareto) study


class Asha(Strict):
    enabled: bool = True
    grace: int = Field(ge=1)  # iterations before a trial may be stopped
    reduction: float = Field(3.0, gt=1.0)


class Budget(Strict):
    num_samples: int = Field(ge=1)
    max_concurrent: int = Field(1, ge=1)
    iterations: int | None = Field(None, ge=1)  # per trial; null = the base config's run.iterations
    seeds: int = Field(1, ge=1)  # seeds per trial: the objective is their mean
    max_failures: int = Field(2, ge=0)  # a failed trial restarts from its last checkpoint
    asha: Asha | None = None


class Resources(Strict):
    mode: Literal["single", "ddp"] = "single"
    cpu: float = Field(1.0, gt=0)  # per trial (single) or per worker (ddp)
    gpu: float = Field(0.0, ge=0)  # fractions pack trials on a GPU (single mode)
    workers: int = Field(1, ge=1)  # ddp: Ray Train workers per trial

    @model_validator(mode="after")
    def _ddp(self) -> Resources:
        if self.mode == "ddp" and self.gpu not in (0, 1):
            raise ValueError("gpu: ddp workers take 0 or 1 whole GPU each (fractions: mode single)")
        return self


class SearchSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base: str  # a training config (configs/*.yaml), relative to the search file or the cwd
    set: dict[str, Any] = {}  # dotted overrides of the base config, applied to every trial
    algorithm: str | None = None  # must match the base config (a guard against the wrong base)
    params: dict[str, Param] = Field(min_length=1)
    scenarios: list[Scenario] = Field(min_length=1)
    objective: Objective = Objective()
    budget: Budget
    resources: Resources = Resources()
    storage: str = "runs/search"  # local dir (shared by all nodes) or s3://bucket/prefix
    optuna_storage: str | None = None  # default: sqlite in the (driver's local) run dir
    sampler: Literal["tpe", "random", "grid"] = "tpe"  # grid: every combination of choice params
    sampler_seed: int = 0
    final_iterations: int | None = Field(None, ge=1)  # exported configs; null: the base's


def load_search(path: str | Path) -> tuple[SearchSpec, dict]:
    """Validate a search file. Returns (spec, base config dict with ``set`` applied)."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the top level must be a mapping (name, base, params, ...)")
    try:
        spec = SearchSpec.model_validate(raw)
    except ValidationError as exc:
        raise UserError("\n".join(f"{path}: {describe_error(e, SearchSpec)}" for e in exc.errors())
                        ) from None
    base_path = _find(spec.base, path)
    base = read_yaml(base_path)
    problems = check_spec(spec, base, base_path.name)
    if problems:
        raise UserError("\n".join(f"{path}: {p}" for p in problems))
    return spec, base_with_set(spec, base)


def _find(base: str, search_file: Path) -> Path:
    for cand in (search_file.parent / base, Path(base)):
        if cand.is_file():
            return cand.resolve()
    raise UserError(f"{search_file}: base: file {base} not found (relative to the search file or "
                    "the working directory) — point base at a training config such as configs/...")


def base_with_set(spec: SearchSpec, base: dict) -> dict:
    raw = copy.deepcopy(base)
    for key, value in spec.set.items():
        set_path(raw, key, value)
    return raw


def set_path(raw: dict, key: str, value: Any) -> None:
    node = raw
    *heads, last = key.split(".")
    for part in heads:
        node = node.setdefault(part, {})
    node[last] = value


def check_spec(spec: SearchSpec, base: dict, base_name: str = "base") -> list[str]:
    """Cross-field checks; every problem is one line naming its key."""
    out = []
    for key in [*spec.set, *spec.params]:
        if not _is_config_path(key):
            where = "set" if key in spec.set else "params"
            out.append(f"{where}.{key}: not a config key — names are config paths such as "
                       "algorithm.daso.t_proto (see daso_ray/config.py)")
    for key, p in spec.params.items():
        for dep in p.when:
            if dep not in spec.params or list(spec.params).index(dep) >= list(spec.params).index(key):
                out.append(f"params.{key}.when: '{dep}' must be a parameter listed before {key}")
    algo = base_with_set(spec, base).get("algorithm", {}).get("name", "daso")
    if spec.algorithm is not None and spec.algorithm != algo:
        out.append(f"algorithm: '{spec.algorithm}' but {base_name} (with set) trains '{algo}' — "
                   "fix base or algorithm")
    for key in spec.params:
        m = re.match(r"algorithm\.(daso|debiaspl|semi)\.", key)
        if m and m.group(1) != algo:
            out.append(f"params.{key}: searches {m.group(1)} but the algorithm is '{algo}'")
    names = [s.name for s in spec.scenarios]
    if len(set(names)) != len(names):
        out.append("scenarios: names must be unique")
    if spec.resources.mode == "ddp" and spec.objective.type == "robust":
        out.append("objective.type: robust trains every scenario in one process — use "
                   "resources.mode: single, or objective.type: per_scenario")
    for i, metric in enumerate([spec.objective.metric, *[e.metric for e in spec.objective.extra]]):
        where = "objective.metric" if i == 0 else f"objective.extra.{i - 1}.metric"
        if metric not in TUNE_KEYS:
            out.append(f"{where}: unknown metric '{metric}' — one of {', '.join(TUNE_KEYS[:14])}")
        num_valid = base_with_set(spec, base).get("data", {}).get("num_valid", 5000)
        if metric.startswith("valid/") and num_valid == 0:
            out.append(f"{where}: '{metric}' needs a validation hold-out but data.num_valid is 0 — "
                       "set data.num_valid (under set:) or use an eval/ metric")
    if spec.sampler == "grid":
        size = math.prod(len(p.values or []) for p in spec.params.values())
        if any(p.type != "choice" or p.when for p in spec.params.values()):
            out.append("sampler: grid needs every parameter as an unconditional choice")
        elif spec.budget.num_samples != size:
            out.append(f"budget.num_samples: {spec.budget.num_samples} but the grid has {size} points")
    if "://" in spec.storage and not re.match(r"^(s3|gs|file|abfss?|hdfs)://\S", spec.storage):
        out.append(f"storage: {spec.storage!r} is not a storage URI Ray Tune can write — use a "
                   "directory, s3://bucket/prefix, gs://bucket/prefix or file:///abs/path")
    if out:
        return out
    return _check_configs(spec, base_with_set(spec, base))  # trials see base + set + params


def _is_config_path(key: str) -> bool:
    model: type[BaseModel] = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        ann = field.annotation
        if i < len(parts) - 1:
            if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                return False
            model = ann
    return True


def _check_configs(spec: SearchSpec, base: dict) -> list[str]:
    """Build every scenario's config at the low and high ends of every domain."""
    out: list[str] = []
    for end in (0, 1):
        params = {k: _end_value(p, end) for k, p in spec.params.items()}
        for scn in spec.scenarios:
            try:
                compose(spec, base, params, scn, seed=0)
            except UserError as err:
                first = str(err).splitlines()[0].split(": ", 1)[-1]
                line = f"scenario {scn.name} with {'high' if end else 'low'} params: {first}"
                if line not in out:
                    out.append(line)
    if spec.budget.asha and spec.budget.asha.grace >= trial_iterations(spec, base):
        out.append(f"budget.asha.grace: {spec.budget.asha.grace} >= the trial's iterations "
                   f"{trial_iterations(spec, base)} — ASHA could never stop a trial")
    return out


def _end_value(p: Param, end: int) -> Any:
    if p.type == "choice":
        return p.values[-end]
    v = p.high if end else p.low
    return int(v) if p.type == "int" else v


def trial_iterations(spec: SearchSpec, base: dict) -> int:
    return spec.budget.iterations or int(base.get("run", {}).get("iterations", 250_000))


def compose(spec: SearchSpec, base: dict, params: dict, scn: Scenario, seed: int,
            iterations: int | None = None) -> Config:
    """The full training config of one (trial params, scenario, seed)."""
    raw = copy.deepcopy(base)
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


class SuggestSpace:
    """Optuna define-by-run space (picklable: the searcher is saved with the experiment).
    Conditional parameters are sampled only when their ``when`` holds, so TPE never models a
    parameter that had no effect."""

    def __init__(self, spec: SearchSpec):
        self.spec = spec

    def __call__(self, trial) -> None:
        chosen: dict[str, Any] = {}
        for key, p in self.spec.params.items():
            if not all(_holds(chosen.get(dep), want) for dep, want in p.when.items()):
                continue
            chosen[key] = _suggest(trial, key, p)


def _holds(value: Any, want: Any) -> bool:
    return value in want if isinstance(want, list) else value == want


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


def grid(spec: SearchSpec, points: int) -> list[dict]:
    """A full factorial grid (``points`` per numeric domain, log-spaced where ``log``), for the
    search-efficiency benchmark. Conditional parameters are ignored."""
    axes = []
    for key, p in spec.params.items():
        if p.when:
            continue
        if p.type == "choice":
            vals = list(p.values)
        elif p.log:
            vals = [p.low * (p.high / p.low) ** (i / (points - 1)) for i in range(points)]
        else:
            vals = [p.low + (p.high - p.low) * i / (points - 1) for i in range(points)]
        if p.type == "int":
            vals = sorted({int(round(v)) for v in vals})
        axes.append((key, vals))
    out = [{}]
    for key, vals in axes:
        out = [{**o, key: v} for o in out for v in vals]
    return out


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def objective_names(spec: SearchSpec) -> tuple[list[str], list[str]]:
    """(metrics, modes) reported to the searcher; the first one drives ASHA and the leaderboard."""
    metrics = ["objective", *[f"objective_{i + 1}" for i in range(len(spec.objective.extra))]]
    modes = [spec.objective.mode, *[e.mode for e in spec.objective.extra]]
    return metrics, modes


def is_finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)
