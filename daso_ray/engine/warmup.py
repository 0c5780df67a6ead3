"""Shared warm-up: train the steps every trial of a study has in common once, fork every trial
from it (issue 16).

An algorithm declares which config keys change nothing before its first ``shared_steps(cfg)``
iterations (``Algorithm.fork_keys``; DASO: its post-P parameters) and how to rebuild its own state
from a warm-up that kept a superset (``Algorithm.superset`` / ``from_warmup``). A run whose config
equals the warm-up's outside those keys resumes from the warm-up's checkpoint at that step instead
of training it again — bit-identical to training from scratch (tests/test_shared_warmup.py).

The rule for when a run cannot share (:func:`fork_problem`): another algorithm or one that
declares no shared steps; any difference outside ``fork_keys`` (data, model, optimiser, seeds,
iterations, P itself, ...); data-parallel ranks (the per-rank m-hat window is not rebuilt); a
shared prefix that is not a multiple of ``run.eval_period`` or not shorter than the run; a
superset too small for the run's own values. Such a run trains from scratch, and says why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from daso_ray.config import Config, differences, from_dict, get_path, set_path, to_dict
from daso_ray.engine import checkpoint
from daso_ray.files import atomic_write_text
from daso_ray.registry import algorithms

# {"digest": the config's, "step": P, "checkpoint": the step-P checkpoint's name, null until done}
MARKER = "warmup.json"
FORKED = "forked_from.json"  # in a run that started from a warm-up: its checkpoint and step


def shared_steps(cfg: Config) -> int:
    """Iterations every run with ``cfg``'s non-fork keys computes alike (0: nothing to share)."""
    return algorithms()[cfg.algorithm.name].pretrain_iters(cfg)


def warmup_config(cfg: Config, domains: dict[str, list]) -> Config:
    """The warm-up of runs that differ from ``cfg`` only in fork keys taking values in ``domains``
    ({dotted key: candidate values, e.g. a range's ends}): ``cfg`` with the superset state its
    algorithm needs to serve every one of them (DASO: the largest L, counts for the longest
    period)."""
    raw = to_dict(cfg)
    domains = {k: [v for v in vals if v is not None] for k, vals in domains.items()}
    for key, value in algorithms()[cfg.algorithm.name].superset(cfg, domains).items():
        set_path(raw, key, value)
    return from_dict(raw)


def shared_warmup(cfgs: list[Config]) -> Config | None:
    """The one warm-up every run of ``cfgs`` can fork from (None when any one cannot, or the
    algorithm shares no steps): the first config, made a superset of the others' fork keys."""
    algo = algorithms()[cfgs[0].algorithm.name]
    raws = [to_dict(c) for c in cfgs[1:]]
    warm = warmup_config(cfgs[0], {k: [get_path(r, k) for r in raws] for k in algo.fork_keys})
    return warm if all(fork_problem(c, warm) is None for c in cfgs) else None


def fork_problem(cfg: Config, warm: Config, world: int = 1) -> str | None:
    """Why a run with ``cfg`` cannot fork from a warm-up trained with ``warm`` (None: it can)."""
    algo = algorithms()[cfg.algorithm.name]
    steps = shared_steps(cfg)
    if cfg.algorithm.name != warm.algorithm.name or steps <= 0:
        return f"{cfg.algorithm.name} shares no steps with the warm-up"
    if world > 1:
        return "data-parallel runs do not fork (each rank's m-hat window is its own)"
    if steps % cfg.run.eval_period or steps >= cfg.run.iterations:
        return (f"the shared prefix ({steps} iterations) must be a multiple of run.eval_period "
                f"({cfg.run.eval_period}) and shorter than run.iterations ({cfg.run.iterations})")
    mine, theirs = _without(to_dict(cfg), algo.fork_keys), _without(to_dict(warm), algo.fork_keys)
    if mine != theirs:
        return f"it differs from the warm-up in {', '.join(differences(mine, theirs))}"
    return algo.superset_problem(cfg, warm)


def digest(cfg: Config) -> str:
    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()


def train_warmup(cfg: Config, out: Path) -> Path:
    """Train ``cfg`` to its shared steps in ``out`` and checkpoint there; returns that checkpoint.
    A finished warm-up of the same config is reused, an unfinished one resumed; a folder left by
    another config is cleared first (it is this function's own scratch space)."""
    from daso_ray.engine.loop import Trainer

    out, steps, mine = Path(out), shared_steps(cfg), digest(cfg)
    done = finished(out, cfg)
    if done is not None:
        return done
    if _marker(out).get("digest") != mine:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MARKER, json.dumps({"digest": mine, "step": steps, "checkpoint": None}))
    trainer = Trainer(cfg, out)
    if checkpoint.latest(out) is not None:
        trainer.resume(out)
    trainer.advance(steps)
    ckpt = checkpoint.save(out, steps, trainer.state_dict())
    atomic_write_text(out / MARKER, json.dumps({"digest": mine, "step": steps,
                                                "checkpoint": ckpt.name}))
    return ckpt


def finished(out: Path, cfg: Config) -> Path | None:
    """The checkpoint of a finished warm-up of ``cfg`` in ``out`` (None if there is none)."""
    info = _marker(out)
    ckpt = Path(out) / "checkpoints" / str(info.get("checkpoint"))
    ok = info.get("digest") == digest(cfg) and info.get("checkpoint")
    return ckpt if ok and (ckpt / checkpoint.STATE).is_file() else None


def _marker(out: Path) -> dict:
    try:
        return json.loads((Path(out) / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def fork(trainer, ckpt: Path) -> None:
    """Start ``trainer`` (fresh) from a warm-up checkpoint: its state at the shared step, the
    algorithm's own state rebuilt from the superset, the warm-up's metric lines up to that step."""
    state = dict(checkpoint.load(ckpt))
    step = int(state["step"])
    state["algorithm"] = trainer.algo.from_warmup(state["algorithm"], step)
    trainer.load_state_dict(state)
    trainer.files.open()
    shutil.copyfile(ckpt.parent.parent / trainer.files.metrics.name, trainer.files.metrics)
    trainer.files.forget_after(step)  # the warm-up's lines up to the fork, as a resume keeps
    # Provenance: where this run's first iterations were computed.
    atomic_write_text(trainer.run_dir / FORKED, json.dumps({"checkpoint": str(ckpt), "step": step}))


def _without(raw: dict, keys: tuple[str, ...]) -> dict:
    for key in keys:
        head, _, leaf = key.rpartition(".")
        parent = get_path(raw, head) if head else raw
        if isinstance(parent, dict):
            parent.pop(leaf, None)
    raw.get("run", {}).pop("out_dir", None)  # where a run writes is not what it computes
    return raw

