"""Read and validate a search file: the schema, the cross-field checks, and every scenario's trial
config composed at both ends of every domain — all before Ray starts, one line per problem.
Also ``--smoke``: the same search shrunk ~25x, its schedule's shape kept."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import ValidationError

from daso_ray.config import Config, get_path, read_yaml, to_dict, validate
from daso_ray.errors import UserError, describe_errors
from daso_ray.metrics import window_problem
from daso_ray.registry import algorithms
from daso_ray.study.compose import baseline_params, compose, end_value, trial_iterations
from daso_ray.study.spec import SearchSpec, base_with_set, spec_problems

SMOKE_ITERATIONS = 40


def scaled_keys() -> tuple[str, ...]:
    """Iteration-valued keys scaled together by --smoke, so P < T and periods still divide T:
    the run's, and each algorithm's own (``scaled_keys`` in its file)."""
    own = [f"algorithm.{name}.{key}" for name, cls in sorted(algorithms().items())
           for key in cls.scaled_keys]
    return ("run.eval_period", "run.checkpoint_period", *own, "optim.warmup_iters")


def load_search(path: str | Path) -> tuple[SearchSpec, Config]:
    """Validate a search file. Returns (spec, the base config with ``set`` applied, validated).
    Raises UserError with one ``FILE: key: problem — fix`` line per problem."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the top level must be a mapping (name, base, params, ...)")
    try:
        spec = SearchSpec.model_validate(raw)
    except ValidationError as exc:
        raise UserError("\n".join(f"{path}: {line}"
                                   for line in describe_errors(exc.errors(), SearchSpec))) from None
    base_path = _find(spec.base, path)
    base_raw = read_yaml(base_path)
    problems = spec_problems(spec, base_raw, base_path.name)
    base = None
    if not problems:
        try:
            base = validate(base_with_set(spec, base_raw), source=f"{base_path.name} (with set)")
        except UserError as err:
            problems = str(err).splitlines()
    problems = problems or config_problems(spec, base)
    if problems:
        raise UserError("\n".join(f"{path}: {p}" for p in problems))
    return spec, base


def check_spec(spec: SearchSpec, base: Config) -> list[str]:
    """Every problem of a (possibly changed) spec over an already validated base."""
    return spec_problems(spec, to_dict(base)) or config_problems(spec, base)


def config_problems(spec: SearchSpec, base: Config) -> list[str]:
    """Build every scenario's config at the low and high ends of every domain."""
    out: list[str] = []
    for end in (0, 1):
        params = {k: end_value(p, end) for k, p in spec.params.items()}
        for scn in spec.scenarios:
            try:
                cfg = compose(spec, base, params, scn, seed=0)
            except UserError as err:
                first = str(err).splitlines()[0].split(": ", 1)[-1]
                line = f"scenario {scn.name} with {'high' if end else 'low'} params: {first}"
                if line not in out:
                    out.append(line)
                continue
            out += [line for line in _window_problems(spec, cfg) if line not in out]
    out += resolution_problems(spec, base) + baseline_problems(spec, base)
    iters = trial_iterations(spec, base)
    if spec.budget.asha and spec.budget.asha.grace >= iters:
        out.append(f"budget.asha.grace: {spec.budget.asha.grace} >= the trial's iterations "
                   f"{iters} — ASHA could never stop a trial")
    shared = _identical_until(spec, base)
    if spec.budget.asha and 0 < spec.budget.asha.grace <= shared:
        out.append(f"budget.asha.grace: {spec.budget.asha.grace} <= {shared}: the study searches "
                   f"only keys read after iteration {shared}, so every trial is identical until "
                   f"then and ASHA would stop trials on ties — set grace > {shared}")
    return out


def _identical_until(spec: SearchSpec, base: Config) -> int:
    """The iterations every trial computes alike when the study searches only its algorithm's
    fork keys (DASO: P); 0 otherwise."""
    algo = algorithms()[base.algorithm.name]
    if any(k not in algo.fork_keys for k in spec.params):
        return 0
    return algo.pretrain_iters(base)


def _window_problems(spec: SearchSpec, cfg: Config) -> list[str]:
    """An objective the composed trial never logs: the paper's median name with another window."""
    problems = [(w, window_problem(m, cfg.run.median_last)) for w, m, _ in spec.objective.targets()]
    return [f"{w}: {p}" for w, p in problems if p]


def baseline_problems(spec: SearchSpec, base: Config) -> list[str]:
    """Every study's first trial is the base config's own values: each must lie in its domain
    (a choice must list it), or the baseline cannot be enqueued."""
    out = []
    for key, value in baseline_params(spec, base).items():
        p = spec.params[key]
        if value is None:
            out.append(f"params.{key}: the base config leaves it null (derived per scenario), so "
                       "the baseline has no value for it — set one under set:, or do not search it")
        elif p.type == "choice" and value not in p.values:
            out.append(f"params.{key}.values: the base config's value {value!r} is not listed — "
                       "add it (every study's first trial is the baseline)")
        elif p.type != "choice" and not (p.low <= value <= p.high):
            out.append(f"params.{key}: the base config's value {value!r} lies outside "
                       f"[{p.low}, {p.high}] — widen the range (every study's first trial is the "
                       "baseline)")
    return out


def _find(base: str, search_file: Path) -> Path:
    for cand in (search_file.parent / base, Path(base)):
        if cand.is_file():
            return cand.resolve()
    raise UserError(f"{search_file}: base: file {base} not found (relative to the search file or "
                    "the working directory) — point base at a training config such as configs/...")


def smoke(spec: SearchSpec, base: Config) -> tuple[SearchSpec, Config]:
    """The same search, SMOKE_ITERATIONS iterations per trial and at most 4 trials per study."""
    iters = trial_iterations(spec, base)
    f = min(1.0, SMOKE_ITERATIONS / iters)
    shrink = lambda v: max(1, int(round(v * f))) if v else v  # noqa: E731 (0 stays 0)
    raw = spec.model_dump()
    base_raw = to_dict(base)
    new_set = dict(raw["set"])
    scaled = scaled_keys()
    for key in scaled:
        value = new_set.get(key, get_path(base_raw, key))
        if isinstance(value, int) and not isinstance(value, bool):
            new_set[key] = shrink(value)
    period = new_set.get("run.eval_period", max(1, int(iters * f) // 4))
    new_set["run.checkpoint_period"] = 2 * period
    new_set["run.eval_period"] = period
    raw["set"] = new_set
    for key, prm in raw["params"].items():  # searched iteration counts shrink with the rest
        if key in scaled:
            prm.update({k: shrink(prm[k]) for k in ("low", "high") if prm[k] is not None})
            if prm["values"]:
                prm["values"] = sorted({shrink(v) for v in prm["values"]})
    b = raw["budget"]
    b.update(iterations=max(period, int(round(iters * f)) // period * period), seeds=1,
             num_samples=min(b["num_samples"], 4), max_concurrent=min(b["max_concurrent"], 2))
    if b["asha"]:  # the first rung past the steps every trial shares (ties before them)
        shared = _identical_until(spec, validate(base_with_set(SearchSpec.model_validate(raw),
                                                               base_raw), source="--smoke"))
        b["asha"].update(grace=(shared // period + 1) * period, reduction=2.0)
    if raw["final_iterations"]:
        raw["final_iterations"] = b["iterations"]
    out = SearchSpec.model_validate(raw)
    new_base = validate(base_with_set(out, base_raw), source="--smoke")
    problems = check_spec(out, new_base)
    if problems:
        raise UserError("--smoke: " + problems[0])
    return out, new_base


def resolution_problems(spec: SearchSpec, base: Config) -> list[str]:
    """A validation hold-out too small to rank trials, for every valid/ objective: none, < 2
    images per class, or one image moving the metric by more than ``objective.min_resolution``
    points. ``base``: validated, so ``num_valid`` is the dataset's own default when unset."""
    out = []
    for where, metric, _ in spec.objective.targets():
        if metric.startswith("valid/"):
            out += _resolution(spec, base, where, metric)
    return out


def _resolution(spec: SearchSpec, base: Config, where: str, metric: str) -> list[str]:
    num_valid = base.data.num_valid
    if num_valid == 0:
        return [f"{where}: '{metric}' needs a validation hold-out but data.num_valid is 0 — "
                "set data.num_valid (under set:) or use an eval/ metric"]
    classes = _num_classes(base.data.root)
    step = 100.0 / num_valid
    need = max(2 * (classes or 0), math.ceil(100.0 / spec.objective.min_resolution))
    # One line with the one value that fixes both problems, not two lines with two values.
    if classes and num_valid < 2 * classes:
        return [f"data.num_valid: {num_valid} images for {classes} classes (< 2 per class) "
                f"cannot rank trials on '{metric}' — set data.num_valid >= {need}"]
    if step > spec.objective.min_resolution:
        return [f"data.num_valid: {num_valid} — one validation image moves '{metric}' by "
                f"{step:.2g} points, more than objective.min_resolution "
                f"{spec.objective.min_resolution}; set data.num_valid >= {need} (or raise "
                "objective.min_resolution)"]
    return []


def _num_classes(root: str | None) -> int | None:
    """The class count from a prepared dataset's manifest (None when it is not prepared here)."""
    manifest = Path(root) / "manifest.json" if root else None
    if manifest is None or not manifest.is_file():
        return None
    try:
        return int(json.loads(manifest.read_text())["num_classes"])
    except (ValueError, KeyError, TypeError):
        return None
