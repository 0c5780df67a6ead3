"""The search-file schema: YAML -> :class:`SearchSpec`, and its cross-field checks.

Everything here runs before Ray starts: a broken file gives one line per problem, each naming the
key (``params.algorithm.daso.t_proto.low``, ``scenarios``, ...), and no cluster is touched. The
format is documented in README.md ("Search-space files"); ``search_spaces/`` holds examples.
:mod:`daso_ray.study.load` reads a file and adds the checks that compose real trial configs.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from daso_ray.config import AlgorithmConfig, Strict, config_model, set_path
from daso_ray.metrics import TUNE_KEYS
from daso_ray.study.objective import Objective


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
        if self.type == "int":  # Optuna's suggest_int would silently truncate 4.5 to 4
            for name in ("low", "high", "step"):
                v = getattr(self, name)
                if v is not None and not float(v).is_integer():
                    whole = math.ceil(v) if name == "low" else max(1, math.floor(v))
                    raise ValueError(f"{name}: {v:g} — an int parameter takes whole numbers "
                                     f"(e.g. {name}: {whole}), or use type: float")
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


class Asha(Strict):
    enabled: bool = True
    grace: int = Field(ge=1)  # iterations before a trial may be stopped
    reduction: float = Field(3.0, gt=1.0)


class Budget(Strict):
    num_samples: int = Field(ge=1)
    max_concurrent: int = Field(1, ge=1)
    iterations: int | None = Field(None, ge=1)  # per trial; null = the base config's run.iterations
    seeds: int = Field(1, ge=1, le=99)  # seeds 0..seeds-1 per trial: the objective is their mean
    # TPE's random start-up trials; null: max(3, num_samples // 4) (Optuna's 10 would leave a small
    # study random from start to end).
    n_startup_trials: int | None = Field(None, ge=0)
    max_failures: int = Field(2, ge=0)  # a failed trial restarts from its last checkpoint
    asha: Asha | None = None
    # Train the steps every trial shares (DASO: the FixMatch steps before P) once per scenario and
    # seed, and fork every trial from there (bit-identical to training each from scratch).
    share_warmup: bool = True


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
    sampler_seed: int = 0  # each study's sampler seed derives from it and the study's name
    shared_samples: bool = False  # true: every study samples the same sequence (sampler_seed)
    final_iterations: int | None = Field(None, ge=1)  # exported configs; null: the base's


def base_with_set(spec: SearchSpec, base: dict) -> dict:
    raw = copy.deepcopy(base)
    for key, value in spec.set.items():
        set_path(raw, key, value)
    return raw


def spec_problems(spec: SearchSpec, base: dict, base_name: str = "base") -> list[str]:
    """Cross-field checks of the file against the base config (a dict, ``set`` not yet applied);
    every problem is one line naming its key."""
    out = []
    for key in [*spec.set, *spec.params]:
        if not _is_config_path(key):
            where = "set" if key in spec.set else "params"
            close = difflib.get_close_matches(key, config_paths(), n=1)
            hint = f"did you mean '{close[0]}'?" if close else \
                "names are config paths such as algorithm.daso.t_proto (README: Configuration)"
            out.append(f"{where}.{key}: not a config key — {hint}")
    for key, p in spec.params.items():
        for dep in p.when:
            if dep not in spec.params or list(spec.params).index(dep) >= list(spec.params).index(key):
                out.append(f"params.{key}.when: '{dep}' must be a parameter listed before {key}")
            else:
                out += _when_value_problems(key, dep, p.when[dep], spec.params[dep])
    default = AlgorithmConfig.model_fields["name"].default  # a base that names none trains it
    algo = base_with_set(spec, base).get("algorithm", {}).get("name", default)
    if spec.algorithm is not None and spec.algorithm != algo:
        out.append(f"algorithm: '{spec.algorithm}' but {base_name} (with set) trains '{algo}' — "
                   "fix base or algorithm")
    for key in spec.params:
        parts = key.split(".")  # algorithm.<name>.<key>: a key of one algorithm's own section
        if len(parts) > 2 and parts[0] == "algorithm" and parts[1] != algo:
            out.append(f"params.{key}: searches {parts[1]} but the algorithm is '{algo}'")
    names = [s.name for s in spec.scenarios]
    if len(set(names)) != len(names):
        out.append("scenarios: names must be unique")
    if spec.resources.mode == "ddp" and spec.objective.type == "robust":
        out.append("objective.type: robust trains every scenario in one process — use "
                   "resources.mode: single, or objective.type: per_scenario")
    for where, metric, _ in spec.objective.targets():
        if metric.startswith("eval/"):  # verify judges the winner on the test set: never select on it
            out.append(f"{where}: '{metric}' is the test set, on which verify judges the winner — "
                       f"search on '{metric.replace('eval/', 'valid/', 1)}' (the validation "
                       "hold-out, data.num_valid)")
        if metric not in TUNE_KEYS:
            allowed = ", ".join(k for k in TUNE_KEYS if not k.startswith("eval/"))
            out.append(f"{where}: unknown metric '{metric}' — one of {allowed}")
    if spec.resources.mode == "ddp" and spec.budget.seeds > 1:
        out.append(f"budget.seeds: {spec.budget.seeds} but a ddp trial trains one seed — use "
                   "seeds: 1, or resources.mode: single (seeds train side by side)")
    if spec.sampler == "grid":
        size = math.prod(len(p.values or []) for p in spec.params.values())
        if any(p.type != "choice" or p.when for p in spec.params.values()):
            out.append("sampler: grid needs every parameter as an unconditional choice")
        elif spec.budget.num_samples != size + 1:
            out.append(f"budget.num_samples: {spec.budget.num_samples} but the grid has {size} "
                       f"points — set {size + 1} (the baseline first, then every grid point)")
    if "://" in spec.storage and not re.match(r"^(s3|gs|file|abfss?|hdfs)://\S", spec.storage):
        out.append(f"storage: {spec.storage!r} is not a storage URI Ray Tune can write — use a "
                   "directory, s3://bucket/prefix, gs://bucket/prefix or file:///abs/path")
    return out


def _when_value_problems(key: str, dep: str, want: Any, cond: Param) -> list[str]:
    """A ``when`` value the condition parameter can never take leaves ``key`` never sampled
    (``"false"``, a string, never equals the bool false): each must be one of its values."""
    out = []
    for w in want if isinstance(want, list) else [want]:
        if cond.type == "choice":
            ok = any(_same(w, v) for v in cond.values)
            can = f"one of {json.dumps(cond.values, default=str)}"  # YAML spelling: true, not True
        else:
            number = isinstance(w, int | float) and not isinstance(w, bool)
            ok = number and cond.low <= w <= cond.high and (
                cond.type == "float" or float(w).is_integer())
            can = f"a{'n int' if cond.type == 'int' else ' float'} in [{cond.low:g}, {cond.high:g}]"
        if not ok:
            out.append(f"params.{key}.when.{dep}: {json.dumps(w, default=str)} "
                       f"({type(w).__name__}) is a value {dep} "
                       f"never takes, so {key} would never be sampled — use {can}")
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal and of one kind: true is not 1, "false" is not false; 2 and 2.0 are one number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def config_paths(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted leaf path of the config (``algorithm.daso.t_proto``, ...)."""
    model = model or config_model()
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += config_paths(ann, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def _is_config_path(key: str) -> bool:
    model: type[BaseModel] = config_model()
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


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
