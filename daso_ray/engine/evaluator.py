"""The EMA model's scores on the held-out sets, taken at the end of every evaluation window.

FixMatch (Sohn et al., NeurIPS 2020, Sec. 4) and DASO (Oh et al., CVPR 2022, Sec. 4.1) report the
accuracy of the EMA model. It is scored here on the test set (``eval/*``) and on the validation
hold-out carved from the labeled set (``valid/*``), each also after post-hoc logit adjustment
(``*/top1_la``: argmax(z − log π_l), Menon et al., ICLR 2021). The metric arithmetic itself is in
``engine/evaluate.py``; this module only runs the model over the sets.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from daso_ray.algorithms import Algorithm, Context
from daso_ray.data.module import TrainData
from daso_ray.engine.evaluate import confusion, metrics_from_confusion
from daso_ray.metrics import CONFUSION_KEY, LABELED_COUNTS, TOP1_LA

SETS = (("test", "eval"), ("valid", "valid"))  # (which set, metric prefix)


class Evaluator:
    """``algo.predict(ema, x)`` in eval mode over the test and validation sets -> metrics.

    ``autocast`` is the training step's (bf16 on CUDA with ``run.amp``), so the model is scored in
    the precision it trains in. ``score`` counts (true, predicted) pairs; it is a parameter so a
    caller can watch what each rank scores.
    """

    def __init__(self, data: TrainData, ctx: Context, algo: Algorithm, ema: nn.Module,
                 autocast: Callable, score: Callable = confusion):
        self.data, self.ctx, self.algo, self.ema = data, ctx, algo, ema
        self.autocast, self.score = autocast, score

    @torch.no_grad()
    def __call__(self, with_confusion: bool = False) -> dict:
        """``eval/*`` and ``valid/*`` metrics (no ``valid/*`` without a validation set);
        ``with_confusion`` adds the test set's confusion matrix (rows true, columns predicted)."""
        counts = self.ctx.labeled_counts.tolist()
        self.ema.eval()
        out = {LABELED_COUNTS: counts}
        for which, prefix in SETS:
            if which == "valid" and len(self.data.split.valid) == 0:
                continue
            conf, conf_la = self._confusions(which)
            out.update(metrics_from_confusion(conf, counts, prefix))
            out[f"{prefix}/{TOP1_LA}"] = 100.0 * float(conf_la.trace()) / max(int(conf_la.sum()), 1)
            if with_confusion and prefix == "eval":
                out[CONFUSION_KEY] = conf.tolist()
        return out

    def _confusions(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(plain, logit-adjusted) confusion matrices of one set, summed over ranks."""
        # Each rank scores its own share of the images (every W-th, read once per run, no
        # padding); summing the matrices over ranks counts each image exactly once.
        mine = self.data.eval_batches(which)
        with self.autocast():
            conf, conf_la = self.score(lambda x: self.algo.predict(self.ema, x), mine,
                                       self.ctx.num_classes, self.ctx.log_prior)
        return self.ctx.dist.all_sum(conf), self.ctx.dist.all_sum(conf_la)
