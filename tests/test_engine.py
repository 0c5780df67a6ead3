"""Loop, checkpoints, resume, metrics and the train entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from daso_ray.algorithms.daso import resolved_t_dist
from daso_ray.config import load_config
from daso_ray.engine import checkpoint
from daso_ray.engine.evaluate import class_groups, metrics_from_confusion, pl_quality
from daso_ray.engine.loop import NonFiniteLoss, Trainer
from daso_ray.engine.optim import lr_factor
from daso_ray.train import main as train_main
from tests.engine_helpers import same_tensors, tiny_config, train

REPO = Path(__file__).resolve().parents[1]
EXTRA = {"daso": {"algorithm": {"daso": {"pretrain_iters": 2, "dist_update_period": 2,
                                         "queue_length": 4}}},
         "semi": {"algorithm": {"threshold": 0.5, "semi": {"est_epoch_iters": 2, "epoch_iters": 2,
                                                           "mb_size": 4, "decay_step": 2}}},
         "debiaspl": {}, "fixmatch": {"algorithm": {"logit_adjust_tau": 1.0}}}


def _flat(state, prefix=""):
    """Tensors of a nested algorithm state, keyed by path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        return {k: v for key, sub in state.items() for k, v in _flat(sub, f"{prefix}/{key}").items()}
    return {}


@pytest.mark.parametrize("name", ["daso", "semi", "debiaspl", "fixmatch"])
def test_resume_is_bit_identical(digits_root, tmp_path, name):
    """N of 2N iterations, a fresh process-like Trainer from the checkpoint, then N more."""
    cfg = tiny_config(digits_root, name, tmp_path, **EXTRA[name])
    full = train(cfg, tmp_path / "full")
    train(cfg, tmp_path / "half", stop_after=4)
    assert checkpoint.latest(tmp_path / "half").name == "step_00000004"
    resumed = train(cfg, tmp_path / "half", resume=True)
    assert resumed.step == full.step == 8
    assert same_tensors(full.model.state_dict(), resumed.model.state_dict()) == []
    assert same_tensors(full.ema.state_dict(), resumed.ema.state_dict()) == []
    a, b = _flat(full.algo.state_dict()), _flat(resumed.algo.state_dict())
    assert a.keys() == b.keys() and len(a) >= (0 if name == "fixmatch" else 1)
    assert same_tensors(a, b) == []
    assert full.history == resumed.history
    lines = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    drop = lambda m: {k: v for k, v in m.items() if k != "perf/img_per_s"}  # noqa: E731
    assert [drop(m) for m in lines(tmp_path / "full")] == [drop(m) for m in lines(tmp_path / "half")]


def test_non_finite_loss_stops_and_keeps_last_checkpoint(digits_root, tmp_path):
    cfg = tiny_config(digits_root, "fixmatch", tmp_path)
    tr = Trainer(cfg, tmp_path / "run")
    step = tr.algo.step

    def poisoned(batch, t, nets):  # fault injection: the loss turns NaN at iteration 5
        out = step(batch, t, nets)
        out.loss = out.loss * (float("nan") if t == 5 else 1.0)
        return out

    tr.algo.step = poisoned
    with pytest.raises(NonFiniteLoss, match="iteration 5.*step_00000004"):
        tr.fit()
    assert checkpoint.latest(tmp_path / "run").name == "step_00000004"
    state = checkpoint.load(tmp_path / "run")
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values()
                                      if v.is_floating_point())
    assert not (tmp_path / "run" / "results.json").exists()


def test_metrics_on_crafted_confusion():
    # 6 classes, labeled counts descending 60..10 -> head {0,1}, medium {2,3}, tail {4,5}
    conf = np.diag([10, 8, 6, 4, 2, 0]).astype(float)
    conf[5, 0] = 10
    conf[4, 0] = 8
    conf[3, 1] = 6
    conf[2, 1] = 4
    conf[1, 0] = 2
    m = metrics_from_confusion(conf, [60, 50, 40, 30, 20, 10], "eval")
    recall = np.array([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    assert m["eval/top1"] == pytest.approx(100 * 30 / 60)
    assert m["eval/balanced_acc"] == pytest.approx(100 * recall.mean())
    assert m["eval/gmean_recall"] == 0.0  # one class at zero recall
    assert m["eval/head_acc"] == pytest.approx(90.0)
    assert m["eval/medium_acc"] == pytest.approx(50.0)
    assert m["eval/tail_acc"] == pytest.approx(10.0)
    assert m["eval/per_class_recall"] == pytest.approx(list(100 * recall))
    g = metrics_from_confusion(np.diag([4, 1]).astype(float) + [[0, 0], [3, 0]], [5, 1])
    assert g["eval/gmean_recall"] == pytest.approx(100 * np.sqrt(1.0 * 0.25))
    assert [list(x) for x in class_groups([1, 9, 5])] == [[1], [2], [0]]


def test_pl_quality_per_class():
    true = np.array([0, 0, 1, 1, 2, -1])
    pred = np.array([0, 1, 1, 1, 1, 2])
    q = pl_quality(true, pred, 3)
    assert q["pl/recall_k"] == pytest.approx([50.0, 100.0, 0.0])
    assert q["pl/precision_k"] == pytest.approx([100.0, 50.0, 0.0])
    assert q["pl/predicted_classes"] == 2 and q["pl/precision"] == pytest.approx(75.0)
    assert q["pl/gain_k"] == pytest.approx([0.5, 2.0, 0.0])


def test_lr_schedules():
    from daso_ray.config import OptimConfig

    assert lr_factor(OptimConfig(), 123, 1000) == 1.0
    cos = OptimConfig(schedule="cosine")
    assert lr_factor(cos, 0, 1000) == 1.0 and lr_factor(cos, 1000, 1000) == pytest.approx(0.19509, 1e-4)
    ms = OptimConfig(schedule="warmup_multistep", warmup_iters=5, milestones=[30, 60], gamma=0.1)
    assert [lr_factor(ms, t, 90) for t in (0, 4, 29)] == pytest.approx([0.2, 1.0, 1.0])
    assert [lr_factor(ms, t, 90) for t in (30, 59, 60)] == pytest.approx([0.1, 0.1, 0.01])


def test_train_cli_digits_daso_200_iterations(digits_root, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "daso_ray.train", str(REPO / "configs/digits_lt_daso.yaml"),
           "--set", "run.iterations=200", "--set", f"data.root={digits_root}",
           "--set", "algorithm.daso.pretrain_iters=100", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["iterations"] == 200 and 10.0 < res["final"]["eval/top1"] <= 100.0
    assert res["config"]["algorithm"]["name"] == "daso" and res["t_dist"] == 1.5
    assert len(res["history"]) == 2 and "eval/top1_median" in res
    assert (out / "config.yaml").is_file() and checkpoint.latest(out).name == "step_00000200"
    assert "pl/precision_k" in json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert again.returncode == 2 and "already holds a run — continue it with --resume" in again.stderr
    assert json.loads((out / "results.json").read_text()) == res  # the finished run is untouched


def test_train_cli_errors(tmp_path, capsys):
    assert train_main(["--resume", str(tmp_path / "nope")]) == 2
    assert "config.yaml not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithm:\n  daso:\n    t_prot: 0.1\n")
    assert train_main([str(bad)]) == 2
    assert "did you mean 'algorithm.daso.t_proto'" in capsys.readouterr().err


def test_seeds_summary(digits_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text((REPO / "configs/digits_lt_fixmatch.yaml").read_text())
    rc = train_main([str(cfg), "--seeds", "2", "--out", str(tmp_path / "s"), "--set",
                     f"data.root={digits_root}", "--set", "run.iterations=4", "--set",
                     "run.eval_period=2", "--set", "run.checkpoint_period=2", "--set", "data.batch_size=8"])
    assert rc == 0
    summary = json.loads((tmp_path / "s" / "results.json").read_text())["summary"]
    vals = summary["eval/top1"]["values"]
    assert len(vals) == 2 and summary["eval/top1"]["mean"] == pytest.approx(sum(vals) / 2)
    seeds = [json.loads((tmp_path / "s" / f"seed_{i}" / "results.json").read_text()) for i in (0, 1)]
    assert [r["config"]["data"]["seed_split"] for r in seeds] == [0, 1]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.run.checkpoint_period % cfg.run.eval_period == 0


def test_paper_configs_follow_the_spec():
    c10 = load_config(REPO / "configs/cifar10_lt_daso.yaml")
    d, o, r = c10.algorithm.daso, c10.optim, c10.run
    assert (d.pretrain_iters, d.queue_length, d.t_proto, d.lambda_align, d.dist_update_period) == (
        5000, 256, 0.05, 1.0, 100)
    assert (o.lr, o.schedule, o.weight_decay, o.nesterov, o.wd_exclude_norm_bias) == (
        0.03, "constant", 5e-4, True, False)
    assert (r.iterations, r.eval_period, r.median_last, c10.data.batch_size, c10.data.mu) == (
        250_000, 500, 20, 64, 2)
    assert resolved_t_dist(c10) == 1.5
    for scen in ("uniform", "reversed"):
        assert resolved_t_dist(load_config(REPO / f"configs/cifar10_lt_daso_{scen}.yaml")) == 0.3
    assert resolved_t_dist(load_config(REPO / "configs/stl10_lt_daso.yaml")) == 0.3
    aves = load_config(REPO / "configs/semi_aves_daso.yaml")
    assert (aves.model.arch, aves.optim.lr, aves.data.batch_size, aves.data.mu, aves.model.ema_decay) == (
        "resnet34", 0.04, 256, 5, 0.9)
