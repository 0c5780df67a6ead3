"""The only training loop: one iteration = algorithm step -> backward -> SGD -> EMA (FixMatch,
Sohn et al., NeurIPS 2020, Alg. 1; DASO, Oh et al., CVPR 2022, Alg. 1).

``Trainer(cfg, run_dir, report).fit()`` trains for ``run.iterations`` iterations, evaluates the EMA
model every ``run.eval_period`` iterations, saves a full checkpoint every ``run.checkpoint_period``
and calls ``report(metrics, checkpoint_dir_or_None)`` once per evaluation. It never imports Ray: the
Ray layer passes its own ``report``.

The Trainer loops and calls, in order, pieces that do one job each: :class:`Stepper` (one
iteration), :class:`Window` (what the iterations since the last evaluation did), :class:`Evaluator`
(the EMA model's scores), :class:`RunFiles` (checkpoints, metrics.jsonl, results.json).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from daso_ray.algorithms import Context, StepOut
from daso_ray.config import Config, to_dict
from daso_ray.data.module import TrainData
from daso_ray.dist import LOCAL, Collective
from daso_ray.engine import checkpoint
from daso_ray.engine.evaluate import confusion
from daso_ray.engine.evaluator import Evaluator
from daso_ray.engine.rng import rng_state, set_rng_state
from daso_ray.engine.run_files import RunFiles, results
from daso_ray.engine.step import NonFiniteLoss, Stepper, resolve_device
from daso_ray.engine.window import Window, hidden_labels
from daso_ray.metrics import HISTORY_KEYS, medians

__all__ = ["NonFiniteLoss", "ReportFn", "Trainer"]

ReportFn = Callable[[dict, "str | None"], None]
Streams = tuple[Iterator[dict], Iterator[dict] | None]  # labeled, unlabeled (None: not used)


class Trainer:
    """The loop around a :class:`Stepper`: data streams, evaluation, checkpoints, reports.

    With ``dist`` (W data-parallel ranks) each rank draws its share of the global batch,
    gradients are averaged, evaluation confusion matrices are summed over ranks and only rank 0
    writes files or hands a checkpoint to ``report`` — which every rank still calls.
    """

    # The Stepper owns these; read through it so there is one copy of each.
    algo = property(lambda self: self.stepper.algo)
    model = property(lambda self: self.stepper.model)
    ema = property(lambda self: self.stepper.ema)
    opt = property(lambda self: self.stepper.opt)
    nets = property(lambda self: self.stepper.nets)

    def __init__(self, cfg: Config, run_dir: str | Path, report: ReportFn | None = None,
                 dist: Collective = LOCAL, device: torch.device | None = None):
        self.cfg, self.run_dir, self.report, self.dist = cfg, Path(run_dir), report, dist
        self.device = device or resolve_device(cfg.run.device)
        self.main = dist.rank == 0
        torch.manual_seed(cfg.run.seed)  # the global generator: initial weights, draws in a step
        self.data = TrainData(cfg.data, cfg.run.seed, self.device, dist.rank, dist.world,
                              distributed=dist.active)
        counts = torch.tensor(self.data.split.counts["labeled"], dtype=torch.long)
        self.ctx = Context(self.data.num_classes, counts, cfg.run.iterations, self.device, cfg.run.seed,
                           dist)
        self.stepper = Stepper(cfg, self.ctx)
        self.step, self.history = 0, []
        self.last_metrics: dict | None = None  # the last evaluation's metrics (None before one)
        self.on_step: Callable[[int], None] | None = None  # after each iteration (progress line)
        self.files = RunFiles(self.run_dir, self.main)
        # ``confusion`` is read from this module when the Trainer is built, so a test can watch
        # what each rank scores by replacing ``loop.confusion`` (tests/test_eval_data.py).
        self.evaluator = Evaluator(self.data, self.ctx, self.algo, self.nets.ema, self.stepper.autocast,
                                   confusion)
        self._window = Window(dist, hidden_labels(self.data, self.algo.uses_unlabeled),
                              self.ctx.num_classes)
        # Opened by the first ``advance``, after ``resume`` has restored the data positions.
        self._streams: Streams | None = None

    # -- checkpoint ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything that changes a result. Per-rank parts (data positions, augmentation and
        torch RNG) are gathered in rank order so a W-rank run resumes each rank exactly."""
        rng = rng_state(self.device)
        ranks = self.dist.all_objects({"data": self.data.state_dict(), "rng": rng})
        return {"step": self.step, **self.stepper.state_dict(), "data": ranks[0]["data"], "rng": rng,
                "ranks": ranks[1:], "history": self.history, "config": json.dumps(to_dict(self.cfg))}

    def load_state_dict(self, state: dict) -> None:
        self.stepper.load_state_dict(state)
        mine = state if self.dist.rank == 0 else state["ranks"][self.dist.rank - 1]
        self.data.load_state_dict(mine["data"])
        set_rng_state(mine["rng"], self.device)
        self.step, self.history = int(state["step"]), list(state["history"])

    def resume(self, path: str | Path) -> None:
        self.load_state_dict(checkpoint.load(Path(path)))
        self.files.forget_after(self.step)

    # -- training -----------------------------------------------------------------------------
    def train_step(self, batch: dict, t: int) -> StepOut:
        with self.files.keeping_last_checkpoint():
            return self.stepper.train_step(batch, t)

    def fit(self) -> dict:
        """Train to ``run.iterations``; write and return ``results.json``'s content."""
        self.advance(self.cfg.run.iterations)
        return self._results()

    def advance(self, until: int) -> None:
        """Train up to iteration ``until`` (a multiple of ``run.eval_period`` or the end), so
        several trainers can run in lockstep (one Tune trial over several scenarios)."""
        run = self.cfg.run
        labeled, unlabeled = self._streams or self._open_streams()
        tick = time.perf_counter()
        for t in range(self.step, min(until, run.iterations)):
            batch = _next_batch(labeled, unlabeled)
            out = self.train_step(batch, t)
            self._window.observe(out, batch)
            self.step = t + 1
            if self.on_step is not None:
                self.on_step(self.step)
            if self.step % run.eval_period == 0 or self.step == run.iterations:
                self._window.seconds += time.perf_counter() - tick
                self._end_window()
                tick = time.perf_counter()

    def _open_streams(self) -> Streams:
        self.files.open()
        uses_u = self.algo.uses_unlabeled
        self._streams = (self.data.labeled(), self.data.unlabeled(self.algo.strong_views) if uses_u else None)
        return self._streams

    # -- end of an evaluation window ------------------------------------------------------------
    def _end_window(self) -> None:
        """Check, score, record, checkpoint, log, report — in this order on every rank, since
        scoring, the training-log means and the checkpoint state are collectives."""
        with self.files.keeping_last_checkpoint():
            self.stepper.raise_if_non_finite()
            self._window.check_losses(self.step - 1)
        # The test confusion matrix ([K][K] ints) only at the schedule's end (T_max, fixed when
        # the run was built): it is what the report draws for the winner, and every window's copy
        # would bloat metrics.jsonl and Tune's results. A run cut short (ASHA, a kill) has none.
        metrics = {"step": self.step, **self.evaluate(with_confusion=self.step == self.ctx.iterations)}
        metrics.update(self._window.metrics())
        self.history.append({k: metrics[k] for k in ("step", *HISTORY_KEYS) if k in metrics})
        metrics.update(medians(self.history, self.cfg.run.median_last))
        run, ckpt = self.cfg.run, None
        if self.step % run.checkpoint_period == 0 or self.step == run.iterations:
            ckpt = self.files.save_checkpoint(self.step, self.state_dict())  # every rank builds it
        self.files.log(metrics)
        self.last_metrics = metrics
        if self.report is not None:
            self.report(metrics, ckpt)
        self._window = self._window.next()

    def evaluate(self, with_confusion: bool = False) -> dict:
        """The EMA model's ``eval/*`` and ``valid/*`` metrics now (:class:`Evaluator`)."""
        return self.evaluator(with_confusion)

    def _results(self) -> dict:
        # A run resumed at its last iteration evaluates nothing new: its final metrics are the
        # last ones it logged, never an empty record (a retried finished trial lands here too).
        final = self.last_metrics or self.files.logged_at(self.step)
        res = results(final, self.step, self.algo.summary(), self.data.split, self.history, self.cfg)
        self.files.write_results(res)
        return res


def _next_batch(labeled: Iterator[dict], unlabeled: Iterator[dict] | None) -> dict:
    """One labeled batch, plus the unlabeled views when the algorithm uses them (``idx_u``: which
    unlabeled images, for the pseudo-label diagnostics)."""
    batch = dict(next(labeled))
    if unlabeled is not None:
        ub = next(unlabeled)
        batch.update({k: v for k, v in ub.items() if k != "idx"}, idx_u=ub["idx"])
    return batch
