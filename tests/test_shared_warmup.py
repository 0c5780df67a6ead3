"""Issue 16: a DASO trial forked from a shared warm-up is bit-identical to the same trial trained
from scratch, with a queue length and m-hat period other than the warm-up's superset."""

from __future__ import annotations

import json

from daso_ray.config import to_dict
from daso_ray.engine import checkpoint
from daso_ray.engine.warmup import (
    digest,
    fork,
    fork_problem,
    shared_steps,
    train_warmup,
    warmup_config,
)
from tests.engine_helpers import same_tensors, tiny_config

P = 6  # shared steps: 3 evaluation windows of 2


def _trial(root, out, **daso):
    # L = 2 < the 3+ head-class features a batch of 8 brings: the ring wraps within a batch.
    values = {"pretrain_iters": P, "queue_length": 2, "dist_update_period": 4, "t_proto": 0.2,
              "lambda_align": 0.5, **daso}
    return tiny_config(root, "daso", out, algorithm={"daso": values},
                       run={"iterations": 12, "eval_period": 2, "checkpoint_period": 4})


def _fit(cfg, run_dir, warm=None):
    from daso_ray.engine.loop import Trainer

    trainer = Trainer(cfg, run_dir)
    if warm is not None:
        fork(trainer, warm)
    trainer.fit()
    return trainer


def _lines(run_dir):
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "perf/img_per_s"} for r in rows]  # wall time


def test_forked_trial_is_bit_identical_to_scratch(digits_root, tmp_path):
    trial = _trial(digits_root, tmp_path)
    # The warm-up serves trials up to L = 5 and period 4; it trains another trial's T_proto,
    # lambda_align and period, which change nothing before P.
    other = _trial(digits_root, tmp_path, dist_update_period=2, t_proto=0.05, lambda_align=2.0)
    warm_cfg = warmup_config(other, {"algorithm.daso.queue_length": [1, 5],
                                     "algorithm.daso.dist_update_period": [2, 4]})
    assert warm_cfg.algorithm.daso.queue_length == 5 and fork_problem(trial, warm_cfg) is None
    ckpt = train_warmup(warm_cfg, tmp_path / "warm")
    assert ckpt.name == f"step_{P:08d}" and shared_steps(trial) == P
    assert train_warmup(warm_cfg, tmp_path / "warm") == ckpt  # finished: reused, not retrained
    stale = warm_cfg.model_copy(deep=True)
    stale.optim.lr = 0.01  # a folder left by another config is retrained, never reused
    train_warmup(stale, tmp_path / "stale")
    train_warmup(warm_cfg, tmp_path / "stale")
    marker = json.loads((tmp_path / "stale" / "warmup.json").read_text())
    assert marker["digest"] == digest(warm_cfg) and marker["checkpoint"] == ckpt.name
    assert same_tensors(checkpoint.load(tmp_path / "stale")["model"],
                        checkpoint.load(ckpt)["model"]) == []

    scratch = _fit(trial, tmp_path / "scratch")
    forked = _fit(trial, tmp_path / "forked", warm=ckpt)
    assert forked.step == scratch.step == 12
    assert same_tensors(scratch.model.state_dict(), forked.model.state_dict()) == []
    assert same_tensors(scratch.ema.state_dict(), forked.ema.state_dict()) == []
    a, b = scratch.algo.state_dict(), forked.algo.state_dict()
    assert same_tensors(a["queue"], b["queue"]) == [] and same_tensors(a["dist"], b["dist"]) == []
    assert b["queue"]["buf"].shape[1] == 2  # the trial's own L, not the warm-up's 5
    assert _lines(tmp_path / "scratch") == _lines(tmp_path / "forked")
    res = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("scratch", "forked")]
    assert res[0]["eval/top1_median"] == res[1]["eval/top1_median"]


def test_state_at_the_fork_equals_scratch_at_p(digits_root, tmp_path):
    """At step P itself: the rebuilt queue (ring layout, pointer, prototypes) and m-hat (h and the
    running window) of L = 3 and period 4 from a warm-up kept at L = 5 and period 2."""
    from daso_ray.engine.loop import Trainer

    trial = _trial(digits_root, tmp_path, queue_length=3)
    warm_cfg = warmup_config(_trial(digits_root, tmp_path, dist_update_period=2),
                             {"algorithm.daso.queue_length": [5], "algorithm.daso.dist_update_period": [4]})
    ckpt = train_warmup(warm_cfg, tmp_path / "warm")
    scratch = Trainer(trial, tmp_path / "scratch")
    scratch.advance(P)
    forked = Trainer(trial, tmp_path / "forked")
    fork(forked, ckpt)
    a, b = scratch.algo.state_dict(), forked.algo.state_dict()
    assert same_tensors(a["queue"], b["queue"]) == [] and same_tensors(a["dist"], b["dist"]) == []
    assert int(a["dist"]["window"].sum()) > 0 and int(a["dist"]["hist"].sum()) > 0  # P mod 4 = 2
    assert (a["queue"]["count"] == 3).any()  # some class filled its ring


def test_fork_rule_names_what_differs(digits_root, tmp_path):
    trial = _trial(digits_root, tmp_path)
    warm = warmup_config(trial, {})
    lr = trial.model_copy(deep=True)
    lr.optim.lr = 0.1
    assert "optim.lr" in fork_problem(lr, warm)
    p = trial.model_copy(deep=True)
    p.algorithm.daso.pretrain_iters = 4
    assert "algorithm.daso.pretrain_iters" in fork_problem(p, warm)
    assert "data-parallel" in fork_problem(trial, warm, world=2)
    wide = _trial(digits_root, tmp_path, queue_length=7)
    assert "queue_length" in fork_problem(wide, warm)  # beyond the superset the warm-up kept
    odd = _trial(digits_root, tmp_path, pretrain_iters=5)
    assert "run.eval_period" in fork_problem(odd, warmup_config(odd, {}))
    fixmatch = tiny_config(digits_root, "fixmatch", tmp_path)
    assert shared_steps(fixmatch) == 0 and "shares no steps" in fork_problem(fixmatch, warm)
    assert to_dict(warm)["algorithm"]["daso"]["fork_history"] >= 2 * 4


def test_a_study_has_a_warmup_only_when_every_trial_can_fork(digits_root, tmp_path):
    """The study-level rule says no (and why) whenever the trials' own rule would."""
    from daso_ray.study.load import load_search
    from daso_ray.study.warmup import warmup_for
    from tests.search_helpers import search_dict, write_base, write_search

    write_base(tmp_path, digits_root)  # P = 20, run.eval_period 10
    t_proto = {"algorithm.daso.t_proto": {"type": "float", "low": 0.02, "high": 1.0, "log": True}}

    def plan(**over):
        spec, base = load_search(write_search(tmp_path, search_dict(tmp_path / "runs", **over)))
        return warmup_for(spec, base, spec.scenarios[0], 0)

    warm, why = plan(params=t_proto)
    assert why == "" and warm.algorithm.daso.fork_history == 20
    assert "optim.lr" in plan()[1]  # search_dict searches optim.lr too
    assert "multiple of run.eval_period" in plan(params=t_proto,
                                                  set={"algorithm.daso.pretrain_iters": 25})[1]
    assert "share_warmup is false" in plan(params=t_proto, budget={
        "num_samples": 2, "share_warmup": False})[1]
