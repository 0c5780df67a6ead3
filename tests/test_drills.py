"""Reliability drills without Ray: a disk that fills up while a checkpoint is written, and a
checkpoint corrupted after the fact. (The kill -9 drills need Ray: tests/test_search_ray.py.)"""

from __future__ import annotations

import errno

import pytest
import torch

from daso_ray.engine import checkpoint
from daso_ray.errors import UserError
from tests.engine_helpers import tiny_config, train


def test_disk_full_during_checkpoint_keeps_the_previous_one(digits_root, tmp_path, monkeypatch):
    """The second checkpoint's write fails half-way with ENOSPC: the run stops with a one-line
    error, no temporary directory is left, and the first checkpoint is still the newest and loads;
    resuming from it reaches the same final state as an uninterrupted run."""
    cfg = tiny_config(digits_root, "daso", tmp_path / "run",
                      algorithm={"daso": {"pretrain_iters": 2, "dist_update_period": 2}})
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"\x00" * 4096)  # a partial file, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    with pytest.raises(UserError, match="checkpoint write failed.*No space left.*step_00000004"):
        train(cfg, tmp_path / "run")
    ckpts = tmp_path / "run" / "checkpoints"
    assert [p.name for p in ckpts.iterdir()] == ["step_00000004"]  # no .tmp_* left behind
    assert checkpoint.load(tmp_path / "run")["step"] == 4

    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    resumed = train(cfg, tmp_path / "run", resume=True)
    clean = train(cfg.model_copy(deep=True), tmp_path / "clean")
    assert resumed.step == clean.step == 8
    a, b = resumed.nets.ema.state_dict(), clean.nets.ema.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(digits_root, tmp_path, capsys):
    cfg = tiny_config(digits_root, "fixmatch", tmp_path / "run")
    train(cfg, tmp_path / "run")
    newest = checkpoint.latest(tmp_path / "run")
    assert newest.name == "step_00000008"
    (newest / "state.pt").write_bytes((newest / "state.pt").read_bytes()[:1000])  # truncated
    state = checkpoint.load(tmp_path / "run")
    assert state["step"] == 4
    assert "step_00000008" in capsys.readouterr().out
    with pytest.raises(UserError, match="not a readable checkpoint"):
        checkpoint.load(newest)
