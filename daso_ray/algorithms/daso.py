"""FixMatch + DASO (Oh et al., CVPR 2022): specs/daso.md §5–6.

Composition: the FixMatch step, a class-balanced :class:`FeatureQueue` fed by the EMA encoder, a
:class:`PLDistribution` (m̂) and the semantic pseudo-label. Before ``pretrain_iters`` (P) the step is
plain FixMatch — the queue and m̂ are still fed, but nothing reads them (tested bit for bit).
"""

from __future__ import annotations

import torch

from daso_ray.algorithms.base import register
from daso_ray.algorithms.daso_parts import (
    FeatureQueue,
    PLDistribution,
    blend,
    semantic_logits,
    semantic_pl,
)
from daso_ray.algorithms.fixmatch import FixMatch


@register("daso")
class DASO(FixMatch):
    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        d, k = cfg.algorithm.daso, ctx.num_classes
        self.t_dist = cfg.resolved_t_dist()
        cap = ([d.queue_length] * k if d.balanced_queue
               else (5 * ctx.labeled_counts).clamp_min(1).tolist())  # host ints, read once
        self.queue: FeatureQueue | None = None  # built at the first push (D from the backbone)
        self._cap = cap
        self.dist = PLDistribution(k, d.dist_update_period, ctx.iterations, ctx.device,
                                   reduce=ctx.dist.all_sum)
        self._q_w: torch.Tensor | None = None

    def _new_queue(self, dim: int) -> FeatureQueue:
        d = self.cfg.algorithm.daso
        return FeatureQueue(self.ctx.num_classes, dim, self._cap, self.ctx.device, d.proto_normalize)

    def _active(self, t: int) -> bool:
        return t >= self.cfg.algorithm.daso.pretrain_iters

    def before_forward(self, batch, t, nets):
        """§6 step 2: labeled weak views through the momentum encoder, enqueue, update prototypes."""
        d = self.cfg.algorithm.daso
        self._labels = batch["y"]
        if d.queue_encoder == "online":
            return  # pushed from this step's own forward in pseudo_label (no extra BN update)
        with torch.no_grad():
            if d.ema_bn_mode == "reference_train":
                # [C] runs the EMA net in train mode here (specs/daso.md §11 item 2): batch BN
                # statistics, and the EMA running buffers are overwritten (momentum 0.1).
                nets.ema.train()
                feats = nets.ema(batch["x"])[1]
                nets.ema.eval()
            else:
                feats = nets.ema(batch["x"])[1]
        self._push(feats, batch["y"])

    def _push(self, feats, labels):
        # §6.1: every rank enqueues the gathered batch in rank order, so queues stay identical.
        feats, labels = self.ctx.dist.all_gather(feats), self.ctx.dist.all_gather(labels)
        if self.queue is None:
            self.queue = self._new_queue(feats.shape[1])
        self.queue.push(feats.float(), labels)

    def pseudo_label(self, probs, parts, t):
        d = self.cfg.algorithm.daso
        if d.queue_encoder == "online":
            self._push(parts.feat_l.detach(), self._labels)
        if not self._active(t):
            return probs
        # q_w from the ONLINE encoder's weak feature of this forward, detached (§5.2).
        self._q_w = semantic_pl(parts.feat_w.detach(), self.queue.protos, d.t_proto)
        k_lin = probs.argmax(dim=1)  # k' (ties: lowest index)
        if d.dist_aware:
            ups = self.dist.upsilon(self.t_dist)[k_lin]
        else:
            ups = torch.full_like(probs[:, 0], d.interp_alpha)
        return blend(probs, self._q_w, ups)

    def extra_losses(self, parts, t):
        d = self.cfg.algorithm.daso
        if not self._active(t) or d.lambda_align <= 0:
            return {}
        # q_s WITH gradient through the online strong feature; prototypes carry none.
        q_s_log = torch.log_softmax(semantic_logits(parts.feat_s[0], self.queue.protos, d.t_proto), 1)
        # Eq. 4: soft CE over ALL unlabeled samples, no mask, divided by μB (§5.4).
        align = -(self._q_w * q_s_log).sum(dim=1).mean()
        return {"align": (d.lambda_align, align)}

    def after_loss(self, yhat, t):
        self.dist.observe(yhat, t)  # argmax p̂' after P, p̂ before (§5.5)

    def state_dict(self):
        return {"queue": None if self.queue is None else self.queue.state_dict(),
                "dist": self.dist.state_dict()}

    def load_state_dict(self, state):
        if state["queue"] is not None:
            q = state["queue"]
            self.queue = self._new_queue(q["buf"].shape[2])
            self.queue.load_state_dict(q)
        self.dist.load_state_dict(state["dist"])

