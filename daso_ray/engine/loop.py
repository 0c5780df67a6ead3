"""The only training loop (DESIGN.md): one iteration = algorithm step -> backward -> SGD -> EMA.

``Trainer(cfg, run_dir, report).fit()`` trains for ``run.iterations`` iterations, evaluates the EMA
model every ``run.eval_period`` iterations, saves a full checkpoint every ``run.checkpoint_period``
and calls ``report(metrics, checkpoint_dir_or_None)`` once per evaluation. It never imports Ray: the
Ray layer passes its own ``report``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from daso_ray.algorithms import Context, StepOut
from daso_ray.config import Config, to_dict
from daso_ray.data.augment import cpu_rng_state
from daso_ray.data.module import TrainData
from daso_ray.dist import LOCAL, Collective
from daso_ray.engine import checkpoint
from daso_ray.engine.evaluate import confusion, metrics_from_confusion, pl_quality
from daso_ray.engine.step import NonFiniteLoss, Stepper, check_finite, resolve_device
from daso_ray.files import atomic_write_text
from daso_ray.metrics import CONFUSION_KEY, HISTORY_KEYS, PAPER_MEDIAN, TEST_MEDIAN, VALID_MEDIAN, medians

ReportFn = Callable[[dict, "str | None"], None]


class Trainer:
    """The loop around a :class:`Stepper`: data streams, evaluation, checkpoints, reports.

    With ``dist`` (W data-parallel ranks, §6.1) each rank draws its share of the global batch,
    gradients are averaged, evaluation confusion matrices are summed over ranks and only rank 0
    writes files or hands a checkpoint to ``report`` — which every rank still calls.
    """

    def __init__(self, cfg: Config, run_dir: str | Path, report: ReportFn | None = None,
                 dist: Collective = LOCAL, device: torch.device | None = None):
        self.cfg, self.run_dir, self.report, self.dist = cfg, Path(run_dir), report, dist
        self.device = device or resolve_device(cfg.run.device)
        self.cuda = self.device.type == "cuda"
        self.main = dist.rank == 0
        torch.manual_seed(cfg.run.seed)
        self.data = TrainData(cfg.data, cfg.run.seed, self.device, dist.rank, dist.world,
                              distributed=dist.active)
        counts = torch.tensor(self.data.split.counts["labeled"], dtype=torch.long)
        self.ctx = Context(self.data.num_classes, counts, cfg.run.iterations, self.device, cfg.run.seed,
                           dist)
        self.stepper = Stepper(cfg, self.ctx)
        st = self.stepper
        self.algo, self.model, self.ema, self.opt, self.sched, self.nets = (
            st.algo, st.model, st.ema, st.opt, st.sched, st.nets)
        self.step, self.history = 0, []
        self.on_step: Callable[[int], None] | None = None  # after each iteration (progress line)
        self._window_reset()
        labels = self.data.unlabeled_labels() if self.algo.uses_unlabeled else np.array([-1])
        self.hidden_u = labels if (labels >= 0).any() else None  # diagnostics only (§9.4)

    # -- checkpoint ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything that changes a result. Per-rank parts (data positions, augmentation and
        torch RNG) are gathered in rank order so a W-rank run resumes each rank exactly."""
        rng = {"torch": torch.get_rng_state()}
        if self.cuda:
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        ranks = self.dist.all_objects({"data": self.data.state_dict(), "rng": rng})
        return {"step": self.step, "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "algorithm": self.algo.state_dict(), "data": ranks[0]["data"], "rng": rng,
                "ranks": ranks[1:], "history": self.history, "config": json.dumps(to_dict(self.cfg))}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.algo.load_state_dict(state["algorithm"])
        mine = state if self.dist.rank == 0 else state["ranks"][self.dist.rank - 1]
        self.data.load_state_dict(mine["data"])
        torch.set_rng_state(cpu_rng_state(mine["rng"]["torch"]))
        if self.cuda and "cuda" in mine["rng"]:
            torch.cuda.set_rng_state(cpu_rng_state(mine["rng"]["cuda"]), self.device)
        self.step, self.history = int(state["step"]), list(state["history"])

    def resume(self, path: str | Path) -> None:
        self.load_state_dict(checkpoint.load(Path(path)))
        _truncate_jsonl(self.run_dir / "metrics.jsonl", self.step)

    # -- training -----------------------------------------------------------------------------
    def train_step(self, batch: dict, t: int) -> StepOut:
        with self._keeping_last_checkpoint():
            return self.stepper.train_step(batch, t)

    @contextlib.contextmanager
    def _keeping_last_checkpoint(self):
        """Say which checkpoint survives a non-finite loss, and how to go on."""
        try:
            yield
        except NonFiniteLoss as err:
            last = checkpoint.latest(self.run_dir)
            keep = f"the last good checkpoint {last} is kept" if last else "no checkpoint was written yet"
            raise NonFiniteLoss(f"{err}; {keep} — lower optim.lr or check the data, then rerun "
                                f"(--resume {self.run_dir} continues from the checkpoint)") from None

    def fit(self) -> dict:
        """Train to ``run.iterations``; write and return ``results.json``'s content."""
        self.advance(self.cfg.run.iterations)
        return self._results()

    def advance(self, until: int) -> None:
        """Train up to iteration ``until`` (a multiple of ``run.eval_period`` or the end), so
        several trainers can run in lockstep (one Tune trial over several scenarios)."""
        cfg = self.cfg.run
        if not hasattr(self, "_streams"):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            labeled = self.data.labeled()
            uses_u = self.algo.uses_unlabeled
            self._streams = (labeled, self.data.unlabeled(self.algo.strong_views) if uses_u else None)
        labeled, unlabeled = self._streams
        tick = time.perf_counter()
        for t in range(self.step, min(until, cfg.iterations)):
            batch = dict(next(labeled))
            if unlabeled is not None:
                ub = next(unlabeled)
                batch.update({k: v for k, v in ub.items() if k != "idx"}, idx_u=ub["idx"])
            out = self.train_step(batch, t)
            self._observe(out, batch, t)
            self.step = t + 1
            if self.on_step is not None:
                self.on_step(self.step)
            if self.step % cfg.eval_period == 0 or self.step == cfg.iterations:
                self._window["seconds"] += time.perf_counter() - tick
                self._end_window()
                tick = time.perf_counter()

    # -- per-window bookkeeping ---------------------------------------------------------------
    def _window_reset(self) -> None:
        self._window = {"logs": {}, "n": 0, "images": 0, "seconds": 0.0, "idx": [], "pl": []}

    def _observe(self, out: StepOut, batch: dict, t: int) -> None:
        w = self._window
        for k, v in out.logs.items():
            w["logs"][k] = w["logs"].get(k, 0.0) + v.detach().float()
        w["n"] += 1
        w["images"] += sum(len(v) for k, v in batch.items() if k.startswith("x"))
        if out.pl is not None and self.hidden_u is not None:
            w["idx"].append(batch["idx_u"])
            w["pl"].append(out.pl.detach())

    def _end_window(self) -> None:
        logs = self._window["logs"]
        with self._keeping_last_checkpoint():
            self.stepper.raise_if_non_finite()
            check_finite(torch.stack([v.cpu() for v in logs.values()] or [torch.zeros(())]), logs,
                         self.step - 1)
        # The test confusion matrix ([K][K] ints) only at the schedule's end (T_max, fixed when
        # the run was built): it is what the report draws for the winner, and every window's copy
        # would bloat metrics.jsonl and Tune's results. A run cut short (ASHA, a kill) has none.
        last = self.step == self.ctx.iterations
        metrics = {"step": self.step, **self.evaluate(with_confusion=last)}
        w = self._window
        if logs:  # training logs as the mean over ranks (identity on one rank)
            mean = self.dist.all_sum(torch.stack([v.float() for v in logs.values()])) / self.dist.world
            n = max(w["n"], 1)
            metrics.update({k: v / n for k, v in zip(logs, mean.tolist(), strict=True)})
        metrics["perf/img_per_s"] = w["images"] / max(w["seconds"], 1e-9)
        if w["pl"]:
            idx = torch.cat(w["idx"]).cpu().numpy()
            pred = torch.cat(w["pl"]).cpu().numpy()
            metrics.update(pl_quality(self.hidden_u[idx], pred, self.ctx.num_classes))
        self.history.append({k: metrics[k] for k in ("step", *HISTORY_KEYS) if k in metrics})
        metrics.update(medians(self.history, self.cfg.run.median_last))
        ckpt = None
        if self.step % self.cfg.run.checkpoint_period == 0 or self.step == self.cfg.run.iterations:
            state = self.state_dict()  # a collective: every rank takes part
            if self.main:
                ckpt = str(checkpoint.save(self.run_dir, self.step, state))
        if self.main:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
        self.last_metrics = metrics
        if self.report is not None:
            self.report(metrics, ckpt)
        self._window_reset()

    @torch.no_grad()
    def evaluate(self, with_confusion: bool = False) -> dict:
        """EMA model in eval mode on the test set (``eval/*``) and validation set (``valid/*``);
        ``with_confusion`` adds the test set's ``eval/confusion`` (rows true, columns predicted)."""
        ema, counts = self.nets.ema, self.ctx.labeled_counts.tolist()
        ema.eval()
        out = {"data/labeled_counts": counts}  # orders per-class recall head -> tail in reports
        for which, prefix in (("test", "eval"), ("valid", "valid")):
            if which == "valid" and len(self.data.split.valid) == 0:
                continue
            # Each rank scores its own share of the images (every W-th, read once per run, no
            # padding); the confusion matrices are summed over ranks, so each image counts once.
            mine = self.data.eval_batches(which)
            with self.stepper.autocast():
                conf, conf_la = confusion(lambda x: self.algo.predict(ema, x), mine,
                                          self.ctx.num_classes, self.ctx.log_prior)
            conf, conf_la = self.dist.all_sum(conf), self.dist.all_sum(conf_la)
            out.update(metrics_from_confusion(conf, counts, prefix))
            out[f"{prefix}/top1_la"] = 100.0 * float(conf_la.trace()) / max(int(conf_la.sum()), 1)
            if with_confusion and prefix == "eval":
                out[CONFUSION_KEY] = conf.tolist()
        return out

    def _results(self) -> dict:
        # A run resumed at its last iteration evaluates nothing new: its final metrics are the
        # last ones it logged, never an empty record (a retried finished trial lands here too).
        m = getattr(self, "last_metrics", None) or _last_logged(self.run_dir / "metrics.jsonl",
                                                                self.step)
        res = {"iterations": self.step, "final": m, **self.algo.summary(),
               "split": str(self.data.split.path), "labeled_counts": self.data.split.counts,
               "history": self.history, "config": to_dict(self.cfg)}
        res["median_window"] = self.cfg.run.median_last
        for key in (TEST_MEDIAN, VALID_MEDIAN, f"eval/{PAPER_MEDIAN}", "eval/top1"):
            if key in m:
                res[key] = m[key]
        if self.main:
            atomic_write_text(self.run_dir / "results.json", json.dumps(res, indent=1))
        return res


def _last_logged(path: Path, step: int) -> dict:
    """The metrics line logged at ``step`` ({} if none)."""
    if not path.is_file():
        return {}
    lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln]
    return next((m for m in reversed(lines) if m["step"] == step), {})


def _truncate_jsonl(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint we resume from (they will be re-emitted)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))
