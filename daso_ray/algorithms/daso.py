"""FixMatch + DASO (Oh et al., CVPR 2022, Eq. 2–5; reference ytaek-oh/daso,
``lib/models/daso_model.py`` ``DASOModel.forward_train`` and ``lib/algorithm/daso.py``).

Composition: the FixMatch step, a class-balanced :class:`FeatureQueue` fed by the EMA encoder, a
:class:`PLDistribution` (m̂) and the semantic pseudo-label. Before ``pretrain_iters`` (P) the step is
plain FixMatch — the queue and m̂ are still fed, but nothing reads them (tested bit for bit).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from daso_ray.algorithms.daso_parts import (
    FeatureQueue,
    PLDistribution,
    blend,
    semantic_logits,
    semantic_pl,
)
from daso_ray.algorithms.daso_warmup import dist_state, queue_state
from daso_ray.algorithms.fixmatch import FixMatch
from daso_ray.registry import Strict, register


class DasoConfig(Strict):
    t_proto: float = Field(0.05, gt=0.0)
    queue_length: int = Field(256, ge=1)
    lambda_align: float = Field(1.0, ge=0.0)
    dist_update_period: int = Field(100, ge=1)
    t_dist: float | None = Field(None, gt=0.0)  # null = the table of resolved_t_dist
    pretrain_iters: int = Field(5000, ge=0)
    dist_aware: bool = True
    interp_alpha: float = Field(0.5, ge=0.0, le=1.0)
    # reference_train: the reference's queue forward, EMA net in train mode (batch BN statistics).
    ema_bn_mode: Literal["eval", "reference_train"] = "eval"
    proto_normalize: bool = False  # prototypes = mean of unit-norm features (not the paper's)
    balanced_queue: bool = True  # false: per-class capacity 5 N_k (Table 7 ablation)
    queue_encoder: Literal["ema", "online"] = "ema"  # Table 7 ablation
    # Iterations of per-iteration argmax counts (and the queue's per-class arrivals) kept so runs
    # with another m-hat period or a shorter queue fork from this run at P: set by a shared
    # warm-up (daso_ray.engine.warmup); 0 keeps nothing.
    fork_history: int = Field(0, ge=0)


def resolved_t_dist(cfg) -> float:
    """T_dist of Eq. 3: ``algorithm.daso.t_dist`` when set, else the paper's per-dataset values
    (App. C, Table 8) — the reference hard-codes 1.5 for every CIFAR-10 scenario."""
    if cfg.algorithm.daso.t_dist is not None:
        return cfg.algorithm.daso.t_dist
    table = {"cifar100": 0.3, "stl10": 0.3, "semi_aves": 0.5}
    if cfg.data.dataset in table:
        return table[cfg.data.dataset]
    # CIFAR-10 rule, also used for digits and user folders: 1.5 when gamma_l == gamma_u.
    return 1.5 if cfg.data.scenario == "consistent" else 0.3


@register
class DASO(FixMatch):
    name = "daso"
    section = DasoConfig
    scaled_keys = ("pretrain_iters", "dist_update_period")
    # Read from P on only (Eq. 2-4, the m-hat blend), or state rebuilt exactly at P (the queue of
    # length L, m-hat of period d: see daso_warmup).
    fork_keys = tuple(f"algorithm.daso.{k}" for k in (
        "t_proto", "queue_length", "lambda_align", "dist_update_period", "t_dist", "dist_aware",
        "interp_alpha", "fork_history"))

    @classmethod
    def check_config(cls, cfg) -> None:
        daso = cfg.algorithm.daso
        if 0 < daso.pretrain_iters < daso.dist_update_period:
            # h must be refreshed once before the blend reads it; the reference then blends with
            # m̂ = 0/0 until the first refresh (every mask 0).
            raise ValueError(
                "algorithm.daso.pretrain_iters: must be >= algorithm.daso.dist_update_period "
                f"({daso.dist_update_period}) so m-hat is estimated before it is used"
            )

    @classmethod
    def pretrain_iters(cls, cfg) -> int:
        return cfg.algorithm.daso.pretrain_iters

    @classmethod
    def superset(cls, cfg, domains):
        """The warm-up keeps the largest L and the counts of twice the longest m-hat period."""
        lengths = [cfg.algorithm.daso.queue_length, *domains.get("algorithm.daso.queue_length", [])]
        periods = [cfg.algorithm.daso.dist_update_period,
                   *domains.get("algorithm.daso.dist_update_period", [])]
        return {"algorithm.daso.queue_length": int(max(lengths)),
                "algorithm.daso.fork_history": 2 * int(max(periods))}

    @classmethod
    def superset_problem(cls, cfg, warm):
        mine, kept = cfg.algorithm.daso, warm.algorithm.daso
        if mine.balanced_queue and mine.queue_length > kept.queue_length:
            return (f"algorithm.daso.queue_length {mine.queue_length} > the warm-up's "
                    f"{kept.queue_length}")
        period = mine.dist_update_period
        need = period + mine.pretrain_iters % period  # the last complete window and the running one
        if need > kept.fork_history:
            return (f"algorithm.daso.dist_update_period {period} needs the last {need} "
                    f"iterations' counts; the warm-up kept {kept.fork_history}")
        return None

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        daso, k = cfg.algorithm.daso, ctx.num_classes
        self.t_dist = resolved_t_dist(cfg)
        cap = ([daso.queue_length] * k if daso.balanced_queue
               else (5 * ctx.labeled_counts).clamp_min(1).tolist())  # host ints, read once
        self.queue: FeatureQueue | None = None  # built at the first push (D from the backbone)
        self._cap = cap
        self.dist = PLDistribution(k, daso.dist_update_period, ctx.iterations, ctx.device,
                                   reduce=ctx.dist.all_sum, keep=daso.fork_history)
        self._q_w: torch.Tensor | None = None

    def _new_queue(self, dim: int) -> FeatureQueue:
        daso = self.cfg.algorithm.daso
        return FeatureQueue(self.ctx.num_classes, dim, self._cap, self.ctx.device,
                            daso.proto_normalize, track=daso.fork_history > 0)

    def _active(self, t: int) -> bool:
        return t >= self.cfg.algorithm.daso.pretrain_iters

    def before_forward(self, batch, t, nets):
        """Every iteration, P included: the labeled weak views ``batch["x"]`` [B, C, H, W] go
        through the EMA encoder without gradient; their features [B, D] join the queues of their
        labels ``batch["y"]`` [B] and refresh those classes' prototypes c_k [K, D] (reference:
        ``forward_train``, "push memory queue"). ``queue_encoder: online`` pushes later instead."""
        daso = self.cfg.algorithm.daso
        self._labels = batch["y"]
        if daso.queue_encoder == "online":
            return  # pushed from this step's own forward in pseudo_label (no extra BN update)
        with torch.no_grad():
            if daso.ema_bn_mode == "reference_train":
                # The reference runs the EMA net in train mode here: batch BN statistics, and the
                # EMA running buffers are overwritten (momentum 0.1).
                nets.ema.train()
                feats = nets.ema(batch["x"])[1]
                nets.ema.eval()
            else:
                feats = nets.ema(batch["x"])[1]
        self._push(feats, batch["y"])

    def _push(self, feats, labels):
        # Every rank enqueues the gathered batch in rank order, so the queues stay identical.
        feats, labels = self.ctx.dist.all_gather(feats), self.ctx.dist.all_gather(labels)
        if self.queue is None:
            self.queue = self._new_queue(feats.shape[1])
        self.queue.push(feats.float(), labels)

    def pseudo_label(self, probs, parts, t):
        """p̂ [μB, K] -> p̂' [μB, K]. From P on: q_w = softmax_k(cos(z_w, c_k) / T_proto) (Eq. 2)
        of the online weak features z_w [μB, D], detached, then p̂' = (1 − υ_k') p̂ + υ_k' q_w with
        k' = argmax p̂ and υ [K] from m̂ (Eq. 3; ``interp_alpha`` for every k without
        ``dist_aware``). Before P, p̂. Reference: ``forward_train``, "pl mixup"."""
        daso = self.cfg.algorithm.daso
        if daso.queue_encoder == "online":
            self._push(parts.feat_l.detach(), self._labels)
        if not self._active(t):
            return probs
        # q_w from the ONLINE encoder's weak feature of this forward, detached.
        self._q_w = semantic_pl(parts.feat_w.detach(), self.queue.protos, daso.t_proto)
        k_lin = probs.argmax(dim=1)  # k' (ties: lowest index)
        if daso.dist_aware:
            upsilon = self.dist.upsilon(self.t_dist)[k_lin]
        else:
            upsilon = torch.full_like(probs[:, 0], daso.interp_alpha)
        return blend(probs, self._q_w, upsilon)

    def extra_losses(self, parts, t):
        """From P on, {"align": (λ_align, L_align)} with L_align = −(1/μB) Σ_u Σ_k q_w[k] ·
        log softmax_k(cos(z_s, c_k) / T_proto) (Eq. 4; total loss Eq. 5): the gradient flows
        through the strong features z_s [μB, D] only, over every sample, no mask. Reference:
        ``forward_train``, ``loss_assign``."""
        daso = self.cfg.algorithm.daso
        if not self._active(t) or daso.lambda_align <= 0:
            return {}
        # q_s WITH gradient through the online strong feature; prototypes carry none.
        q_s_log = torch.log_softmax(semantic_logits(parts.feat_s[0], self.queue.protos,
                                                    daso.t_proto), 1)
        align = -(self._q_w * q_s_log).sum(dim=1).mean()  # divided by μB, as the reference
        return {"align": (daso.lambda_align, align)}

    def after_loss(self, yhat, t):
        """Count ŷ [μB] (argmax p̂' from P on, p̂ before; no threshold) into m̂'s window, which
        replaces h every ``dist_update_period`` iterations (reference: ``lib/algorithm/daso.py``
        ``DASO.run_step``, ``update_pl_dist``)."""
        self.dist.observe(yhat, t)

    def summary(self):
        """{"t_dist": the T_dist this run used (explicit or from the table)}."""
        return {"t_dist": self.t_dist}

    def state_dict(self):
        """{"queue": None before the first push, else ``buf`` [K, L, D], ``count``/``ptr`` [K],
        ``protos`` [K, D]; "dist": m̂'s ``hist``/``window`` [K]} — the reference saves neither."""
        return {"queue": None if self.queue is None else self.queue.state_dict(),
                "dist": self.dist.state_dict()}

    def from_warmup(self, state, step):
        """The queue of this run's L and m-hat of its period at ``step``, from a warm-up that kept
        a superset (``fork_history``); bit-identical to this run's own at ``step``."""
        own = dict(state)
        if state["queue"] is not None:
            own["queue"] = queue_state(state["queue"], self._cap, FeatureQueue.means,
                                       self.ctx.device)
        own["dist"] = dist_state(state["dist"], self.cfg.algorithm.daso.dist_update_period, step)
        return own

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output (the queue rebuilt with its saved D)."""
        if state["queue"] is not None:
            q = state["queue"]
            self.queue = self._new_queue(q["buf"].shape[2])
            self.queue.load_state_dict(q)
        self.dist.load_state_dict(state["dist"])
