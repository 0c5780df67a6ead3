"""One training iteration on one device, no data or I/O: :class:`Stepper` (DASO, Oh et al.
CVPR 2022, Alg. 1; FixMatch, Sohn et al. NeurIPS 2020, Alg. 1 — the loss, then backward, SGD, EMA).

Kept apart from the loop (``engine/loop.py``) so benchmarks and tests time and trace exactly the
production iteration.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from daso_ray.algorithms import Context, Nets, StepOut, build_algorithm
from daso_ray.config import Config
from daso_ray.engine.optim import make_optimizer, make_scheduler
from daso_ray.errors import UserError
from daso_ray.models import build_model
from daso_ray.models.ema import EMA


class NonFiniteLoss(UserError):
    """The loss became NaN/inf; the last good checkpoint is kept untouched."""


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("run.device: cuda requested but no CUDA device is visible — set run.device: cpu")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                        ("cpu" if name == "auto" else name))


FINITE_CHECK_EVERY = 10  # iterations between the (synchronising) non-finite-loss checks


class Stepper:
    """Model, EMA, optimizer, LR schedule and algorithm: one training iteration, no data or I/O.

    The iteration never waits on the device: a non-finite loss is recorded on the device and
    read only every ``FINITE_CHECK_EVERY`` iterations (:meth:`raise_if_non_finite`). The
    benchmark (benchmarks/step.py) times exactly this object.
    """

    def __init__(self, cfg: Config, ctx: Context):
        self.cfg, self.ctx, self.device = cfg, ctx, ctx.device
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            configure_cuda(cfg.run.deterministic)
        self.algo = build_algorithm(cfg, ctx)
        self.model = build_model(cfg.model, ctx.num_classes, self.algo.balanced_head).to(self.device)
        if self.cuda and cfg.run.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.cuda and ctx.dist.active and cfg.run.sync_bn:
            # Data-parallel: BN statistics over the global batch, as on one device.
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        ctx.dist.broadcast([*self.model.parameters(), *self.model.buffers()])
        self.ema = EMA(self.model, cfg.model.ema_decay)
        self.opt = make_optimizer(self.model, cfg.optim)
        self.sched = make_scheduler(self.opt, cfg.optim, cfg.run.iterations)
        self.nets = Nets(self.model, self.ema.module)
        # run.compile: the whole forward + algorithm + loss as one graph (model, EMA encoder,
        # queue/prototype updates, pseudo-labels, losses: 0 graph breaks for every algorithm,
        # tests/test_compile.py). The iteration number is a Python int: Dynamo makes it dynamic
        # after the first call and adds one graph per branch it decides (t >= P, refresh steps).
        self.compiled_step = torch.compile(self.algo.step) if cfg.run.compile else None
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self._loss_names: list[str] = []

    def state_dict(self) -> dict:
        """Model, EMA, optimizer, scheduler and algorithm states: this object's part of a checkpoint."""
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "algorithm": self.algo.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s parts (``state`` may hold more: a whole checkpoint)."""
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.algo.load_state_dict(state["algorithm"])

    def autocast(self):
        if self.cuda and self.cfg.run.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, batch: dict, t: int) -> StepOut:
        """Loss from the algorithm, then backward, SGD step, LR step, EMA update (FixMatch Alg. 1)."""
        if self.cuda and self.cfg.run.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                     for k, v in batch.items()}
        with self.autocast():
            out = (self.compiled_step or self.algo.step)(batch, t, self.nets)
        self._record_finite(out.loss, t)
        if (t + 1) % FINITE_CHECK_EVERY == 0:
            self.raise_if_non_finite(out.logs)
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        self.ctx.dist.average_gradients(self.model)
        self.opt.step()
        self.sched.step()
        if not (self.cuda and self.cfg.run.sync_bn):
            # BN running statistics in one collective; the integer step counters advance alike
            # on every rank and need none.
            self.ctx.dist.broadcast([b for b in self.model.buffers() if b.is_floating_point()])
        self.ema.update(self.model, t)
        return out

    def _record_finite(self, loss: torch.Tensor, t: int) -> None:
        """Remember the first iteration whose loss is NaN/inf, on the device (no sync)."""
        bad = ~torch.isfinite(loss.detach()).all() & (self._first_bad < 0)
        self._first_bad = torch.where(bad, t, self._first_bad)

    def raise_if_non_finite(self, logs: dict | None = None) -> None:
        """The periodic check (one host sync): raise :class:`NonFiniteLoss` naming the first
        iteration whose loss was not finite."""
        first = int(self._first_bad)
        if first >= 0:
            parts = _scalars(logs or {})
            raise NonFiniteLoss(f"non-finite loss at iteration {first}"
                                + (f" (last values: {parts})" if parts else ""))


def configure_cuda(deterministic: bool) -> None:
    """Fixed input shapes: let cuDNN pick the fastest kernels, unless ``run.deterministic`` asks
    for bit-reproducible runs (deterministic kernels only, slower)."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS determinism
        torch.use_deterministic_algorithms(True, warn_only=True)


def check_finite(loss: torch.Tensor, logs: dict, t: int) -> None:
    if bool(torch.isfinite(loss.detach()).all()):
        return
    raise NonFiniteLoss(f"non-finite loss at iteration {t} ({_scalars(logs)})")


def _scalars(logs: dict) -> str:
    """``name=value`` of the scalar logs, for an error message (reads them: a host sync)."""
    return ", ".join(f"{k}={float(v):.4g}" for k, v in logs.items() if v.numel() == 1)
