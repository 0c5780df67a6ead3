"""``run.compile`` compiles the whole forward + algorithm + loss: graph breaks counted on CPU.

``torch._dynamo.explain`` traces the step without compiling kernels, so this is cheap. A graph
break splits the step into pieces that run eagerly in between (and, on CUDA, a break at a
host read is a synchronisation); FixMatch's and DASO's steps trace as one graph.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.step import make_batch
from daso_ray.algorithms import Context
from daso_ray.config import from_dict
from daso_ray.engine.step import Stepper

EXPECTED_BREAKS = {"fixmatch": 0, "daso": 0, "debiaspl": 0, "semi": 0}


@pytest.mark.parametrize("name", sorted(EXPECTED_BREAKS))
def test_training_step_graph_breaks(name):
    cfg = from_dict({"algorithm": {"name": name, "daso": {"pretrain_iters": 4, "dist_update_period": 4}},
                     "model": {"arch": "wrn10_1"}, "data": {"batch_size": 4, "mu": 2},
                     "run": {"device": "cpu", "iterations": 100}})
    ctx = Context(10, torch.tensor([50, 30, 17, 10, 6, 4, 3, 2, 2, 1]), 100, torch.device("cpu"))
    torch.manual_seed(0)
    stepper = Stepper(cfg, ctx)
    batch = make_batch(4, 2, 10, 16, "cpu")
    first = torch._dynamo.explain(stepper.algo.step)(batch, 0, stepper.nets)  # builds the queue
    for t in range(6):  # DASO past P: queue, prototypes, blend and L_align all in the trace
        stepper.train_step(batch, t)
    steady = torch._dynamo.explain(stepper.algo.step)(batch, 6, stepper.nets)
    for explained in (first, steady):
        reasons = [b.reason for b in explained.break_reasons]
        assert explained.graph_break_count == EXPECTED_BREAKS[name], reasons
        assert explained.graph_count == 1 + EXPECTED_BREAKS[name]
