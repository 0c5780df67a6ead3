"""Typed run configuration: one home for every default (pydantic v2, unknown keys are errors).

Sections: ``data``, ``model``, ``algorithm``, ``optim``, ``run``. Defaults reproduce the DASO
CIFAR-10-LT protocol (specs/daso.md §8). Parameter names are config paths such as
``algorithm.daso.t_proto``; search spaces and ``--set`` overrides use the same paths.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from daso_ray.errors import UserError

DATASETS = ("digits", "cifar10", "cifar100", "stl10", "semi_aves", "folder")


class Strict(BaseModel):
    """Base of every section: unknown keys are rejected (specs/daso.md §11 item 5)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# Data defaults that depend on the dataset, filled in for the keys a config leaves out (the field
# defaults below are CIFAR-10's). The protocols' numbers for the benchmarks; for the naturally
# long-tailed sources (Semi-Aves, a user's folders) "the data's own": every labeled image
# (n_max_l: null), every unlabeled one, no imposed profile and no validation hold-out — a CIFAR
# hold-out of 5000 images is larger than most folders. Their unlabeled images have no labels, so no
# class profile can be imposed on them: scenario uniform, imb_ratio_u 1 (daso_ray.data.longtail).
_NATURAL = dict(n_max_l=None, n_max_u=None, imb_ratio_l=1.0, imb_ratio_u=1.0, scenario="uniform",
                num_valid=0)
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": dict(n_max_l=30, n_max_u=100, imb_ratio_l=10.0, imb_ratio_u=10.0, num_valid=100),
    "cifar10": dict(n_max_l=1500, n_max_u=3000, imb_ratio_l=100.0, imb_ratio_u=100.0, num_valid=5000),
    "cifar100": dict(n_max_l=150, n_max_u=300, imb_ratio_l=10.0, imb_ratio_u=10.0, num_valid=5000),
    "stl10": dict(n_max_l=450, n_max_u=None, imb_ratio_l=10.0, imb_ratio_u=1.0, scenario="uniform",
                  num_valid=500),
    "semi_aves": dict(_NATURAL),
    "folder": dict(_NATURAL),
}


class DataConfig(Strict):
    dataset: Literal[DATASETS] = "cifar10"  # type: ignore[valid-type]
    root: str = "data/cifar10"  # folder written by `python -m daso_ray.prepare`; default data/<dataset>
    loader: Literal["ffcv", "torch"] = "ffcv"
    scenario: Literal["consistent", "uniform", "reversed"] = "consistent"
    n_max_l: int | None = Field(1500, ge=1)  # N_1: labeled head-class size; null = every labeled image
    n_max_u: int | None = Field(3000, ge=1)  # M_1; null = every unlabeled image (STL-10, Semi-Aves)
    imb_ratio_l: float = Field(100.0, ge=1.0)  # gamma_l
    imb_ratio_u: float = Field(100.0, ge=1.0)  # gamma_u; reversal is the scenario, never < 1
    num_valid: int = Field(5000, ge=0)  # class-balanced validation hold-out
    seed_split: int = Field(0, ge=0)  # seed.split of specs/daso.md §2.5
    unlabeled_pool: Literal["in", "in+out"] = "in"  # Semi-Aves: U_in or U_in + U_out
    batch_size: int = Field(64, ge=1)  # B (labeled)
    mu: int = Field(2, ge=1)  # unlabeled-to-labeled ratio
    num_workers: int = Field(2, ge=1)
    image_size: int = Field(32, ge=8)  # model input side (STL-10 is augmented at 96 px, fed at 32)

    @model_validator(mode="before")
    @classmethod
    def _dataset_defaults(cls, raw: Any) -> Any:
        """Fill the keys ``raw`` leaves out from :data:`DATASET_DEFAULTS` of its dataset."""
        if not isinstance(raw, dict) or raw.get("dataset", "cifar10") not in DATASETS:
            return raw  # not a mapping / unknown dataset: the field validators name the problem
        dataset = raw.get("dataset", "cifar10")
        return {"root": f"data/{dataset}", **DATASET_DEFAULTS[dataset], **raw}

    @model_validator(mode="after")
    def _scenario_ratios(self) -> DataConfig:
        if self.scenario == "uniform" and self.imb_ratio_u != 1.0:
            raise ValueError("data.imb_ratio_u: scenario 'uniform' needs imb_ratio_u: 1")
        if self.scenario != "uniform" and self.imb_ratio_u == 1.0 and self.imb_ratio_l > 1.0:
            raise ValueError(
                f"data.scenario: '{self.scenario}' with imb_ratio_u: 1 is the uniform scenario; "
                "set scenario: uniform"
            )
        return self

    @model_validator(mode="after")
    def _valid_holdout_per_class(self) -> DataConfig:
        # Issue 13 case 6. The hold-out is num_valid // K images per class, so 0 < num_valid < K
        # holds out nothing: no valid/* metric, and a search on it ranks NaNs. Caught here for
        # the datasets whose class count is fixed (also when a search validates its base without
        # the prepared data); TrainData checks every dataset against its manifest.
        classes = {"digits": 10, "cifar10": 10, "stl10": 10, "cifar100": 100}.get(self.dataset)
        if classes and 0 < self.num_valid < classes:
            raise ValueError(f"num_valid: {self.num_valid} holds out 0 images per class of the "
                             f"{classes} classes — set data.num_valid >= {classes} (or 0 for no "
                             "validation hold-out)")
        return self


class ModelConfig(Strict):
    arch: Literal["wrn28_2", "wrn16_2", "wrn10_1", "resnet34", "resnet50"] = "wrn28_2"
    pretrained_path: str | None = None  # local file only; weights are never downloaded
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    num_classes: int | None = Field(None, ge=2)  # derived from the data; if set it must match


class DasoConfig(Strict):
    t_proto: float = Field(0.05, gt=0.0)
    queue_length: int = Field(256, ge=1)
    lambda_align: float = Field(1.0, ge=0.0)
    dist_update_period: int = Field(100, ge=1)
    t_dist: float | None = Field(None, gt=0.0)  # null = scenario table (specs/daso.md §11 item 3)
    pretrain_iters: int = Field(5000, ge=0)
    dist_aware: bool = True
    interp_alpha: float = Field(0.5, ge=0.0, le=1.0)
    ema_bn_mode: Literal["eval", "reference_train"] = "eval"  # specs/daso.md §11 item 2
    proto_normalize: bool = False  # prototypes = mean of unit features (§12 item 4)
    balanced_queue: bool = True  # false: per-class capacity 5 N_k (Table 7 ablation)
    queue_encoder: Literal["ema", "online"] = "ema"  # Table 7 ablation


class DebiasPLConfig(Strict):
    tau: float = Field(0.4, ge=0.0)  # debias factor lambda (peers.md §5.4)
    qhat_m: float = Field(0.999, ge=0.0, lt=1.0)
    single_qhat: bool = False


class SeMiConfig(Strict):
    est_epoch_iters: int = Field(2500, ge=0)  # components start after est_epoch (5 x 500 iters)
    epoch_iters: int = Field(500, ge=1)  # pi-hat^u refresh period (one ACR "epoch")
    alpha: float = Field(0.4, ge=0.0, le=1.0)
    t_tar: float = Field(0.1, gt=0.0)
    mb_size: int = Field(128, ge=1)
    decay_step: int = Field(100, ge=1)
    beta: float = Field(0.99, gt=0.0, le=1.0)
    oheml_scale: float = Field(0.75, gt=0.0)
    proto_t: float = Field(0.09, gt=0.0)
    lambda_ea: float = Field(0.15, ge=0.0)
    tau1: float = Field(2.0, ge=0.0)  # head-1 target LA (applied only with pula)
    tau12: float = Field(2.0, ge=0.0)  # head-2 targets from head-1 logits
    tau2: float = Field(2.0, ge=0.0)  # balanced-head labeled LA
    pula: bool = False
    renormalize_blend: bool = True  # peers.md §7.5 item 7; false reproduces the code
    strong_views: int = Field(2, ge=1, le=2)


class AlgorithmConfig(Strict):
    name: Literal["supervised", "fixmatch", "daso", "debiaspl", "semi"] = "daso"
    threshold: float = Field(0.95, ge=0.0, le=1.0)
    lambda_u: float = Field(1.0, ge=0.0)
    logit_adjust_tau: float = Field(0.0, ge=0.0)  # FixMatch+LA when > 0
    daso: DasoConfig = DasoConfig()
    debiaspl: DebiasPLConfig = DebiasPLConfig()
    semi: SeMiConfig = SeMiConfig()


class OptimConfig(Strict):
    lr: float = Field(0.03, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0.0)
    wd_exclude_norm_bias: bool = False  # specs/daso.md §11 item 8
    schedule: Literal["constant", "cosine", "warmup_multistep"] = "constant"
    warmup_iters: int = Field(0, ge=0)
    milestones: list[int] = []
    gamma: float = Field(0.1, gt=0.0)


class RunConfig(Strict):
    iterations: int = Field(250_000, ge=1)
    eval_period: int = Field(500, ge=1)
    checkpoint_period: int = Field(5000, ge=1)
    median_last: int = Field(20, ge=1)
    seed: int = Field(0, ge=0)  # seed.train: init, sampling, augmentation
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # bf16 autocast, CUDA only
    channels_last: bool = True  # CUDA only
    compile: bool = False
    # CUDA only: deterministic kernels (cuDNN, cuBLAS, scatter) for bit-reproducible runs and
    # resumes; off, cuDNN benchmarks kernels for the fixed shapes and TF32 matmuls are allowed.
    deterministic: bool = False
    sync_bn: bool = True  # SyncBatchNorm across data-parallel ranks on CUDA (specs/daso.md §6.1)
    out_dir: str = "runs/default"


class Config(Strict):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        daso = self.algorithm.daso
        if self.algorithm.name == "daso" and 0 < daso.pretrain_iters < daso.dist_update_period:
            # specs/daso.md §5.5 [D]: h must be refreshed once before the blend reads it.
            raise ValueError(
                "algorithm.daso.pretrain_iters: must be >= algorithm.daso.dist_update_period "
                f"({daso.dist_update_period}) so m-hat is estimated before it is used"
            )
        if self.run.checkpoint_period % self.run.eval_period:
            # A checkpoint travels with a report (Tune), so it must fall on an evaluation step.
            raise ValueError(
                f"run.checkpoint_period: {self.run.checkpoint_period} must be a multiple of "
                f"run.eval_period ({self.run.eval_period})"
            )
        return self

    def resolved_t_dist(self) -> float:
        """T_dist: the explicit value, else the scenario table of specs/daso.md §11 item 3."""
        if self.algorithm.daso.t_dist is not None:
            return self.algorithm.daso.t_dist
        table = {"cifar100": 0.3, "stl10": 0.3, "semi_aves": 0.5}
        if self.data.dataset in table:
            return table[self.data.dataset]
        # CIFAR-10 rule, also used for digits and user folders: 1.5 when gamma_l == gamma_u.
        return 1.5 if self.data.scenario == "consistent" else 0.3


# ----------------------------------------------------------------------------------------------
# Loading, overrides, error messages


def _field_names(model: type[BaseModel], path: tuple) -> list[str]:
    """Allowed keys of the section found by walking ``path`` from the root model (through dict
    values and list items of models, e.g. ``params.<name>`` or ``scenarios.0``)."""
    node: Any = model
    for part in path:
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return []
            node = field.annotation
        else:  # a dict value or a list item: step into the element type
            args = [a for a in get_args(node) if a is not type(None)]
            node = next((a for a in reversed(args) if isinstance(a, type)), None)
        args = [a for a in get_args(node) if a is not type(None)]
        if len(args) == 1 and get_origin(node) in (Union, UnionType):  # Optional[Model]
            node = args[0]
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def describe_error(err: dict[str, Any], root: type[BaseModel]) -> str:
    """One line for one pydantic error, naming the dotted key (and a close match for typos)."""
    path = tuple(p for p in err["loc"] if not str(p).startswith("function-after"))
    key = ".".join(str(p) for p in path)
    if err["type"] == "extra_forbidden":
        allowed = _field_names(root, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{'.'.join([*map(str, path[:-1]), close[0]])}'?" if close else (
            f"allowed keys here: {', '.join(allowed)}"
        )
        return f"unknown key '{key}' — {hint}"
    msg = err["msg"].removeprefix("Value error, ")
    if msg.startswith((f"{key}:", f"{key}.")) or (not key and ":" in msg):
        return msg  # the validator already named the key (data.imb_ratio_u, not data.data...)
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    if err["type"] == "value_error" and key:
        return f"{key}.{msg}" if ":" in msg.split(" ")[0] else f"{key}: {msg}"
    return f"key '{key}': {msg}{shown}"


def describe_errors(errors: list[dict[str, Any]], root: type[BaseModel]) -> list[str]:
    """One line per pydantic error, except a "Field required" for a key that a mistyped key's
    "did you mean" line already names (one typo is one problem, one line)."""
    lines = [describe_error(e, root) for e in errors]
    named = {ln.split("did you mean '")[1].rstrip("'?") for ln in lines if "did you mean '" in ln}
    return [ln for e, ln in zip(errors, lines, strict=True)
            if not (e["type"] == "missing" and ".".join(map(str, e["loc"])) in named)]


def validate(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a plain dict; raise UserError with one line per problem, each naming its key."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: the top level must be a mapping of sections (data, model, ...)")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {line}" for line in describe_errors(exc.errors(), Config)]
        raise UserError("\n".join(lines)) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. algorithm.daso.t_proto=0.1")
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {key}: '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    return raw


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; a missing or malformed file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path} — pass the path of a YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML — fix the syntax") from None
    return data if data is not None else {}


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Load YAML (or start from defaults when ``path`` is None), apply overrides, validate."""
    raw = read_yaml(path) if path is not None else {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the top level must be a mapping of sections (data, model, ...)")
    return validate(apply_overrides(raw, list(overrides)), source=str(path or "config"))


def to_dict(cfg: Config) -> dict[str, Any]:
    """A plain, JSON/YAML-serialisable dict (what Tune and export carry)."""
    return cfg.model_dump(mode="json")


def from_dict(raw: dict[str, Any]) -> Config:
    return validate(raw)
