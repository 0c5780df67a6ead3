"""The training iteration never waits on the device (issue: a sync-free step).

Counted on CPU with :class:`tests.sync_count.SyncCounter` (the calls that synchronise on CUDA),
over whole Trainer iterations: data path -> algorithm step -> backward -> SGD -> EMA. The only
synchronisation left is the periodic non-finite-loss check, once per ``FINITE_CHECK_EVERY``.
On a GPU, tests/test_gpu.py checks the same with ``torch.cuda.set_sync_debug_mode``.
"""

from __future__ import annotations

import pytest
import torch

from daso_ray.engine.loop import Trainer
from daso_ray.engine.step import FINITE_CHECK_EVERY
from tests.engine_helpers import tiny_config
from tests.sync_count import SyncCounter


@pytest.mark.parametrize("name", ["daso", "fixmatch", "debiaspl", "semi"])
def test_iterations_are_sync_free_but_the_finite_check(digits_root, tmp_path, name):
    cfg = tiny_config(digits_root, name, tmp_path,
                      algorithm={"daso": {"pretrain_iters": 4, "dist_update_period": 4}},
                      run={"iterations": 40, "eval_period": 40, "checkpoint_period": 40})
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.advance(10)  # streams built, DASO past its pre-training: the whole DASO path runs
    with SyncCounter() as syncs:
        trainer.advance(30)
    assert syncs.count == 20 // FINITE_CHECK_EVERY, syncs.where  # one read per finite check
    assert all("step.py" in site for site in syncs.where), syncs.where  # raise_if_non_finite


def test_counter_sees_what_would_synchronise():
    """The counter itself: the calls that would stall a GPU are counted, device math is not."""
    x = torch.arange(6.0)
    with SyncCounter() as syncs:
        y = (x * 2).sum()
        torch.bincount(x.long())
        x[x > 2]
        float(y)
        y.item()
        x[0] = 1.0  # a Python scalar into a tensor: a blocking host -> device copy on CUDA
    assert syncs.count == 5
