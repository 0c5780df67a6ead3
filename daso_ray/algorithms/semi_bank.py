"""SeMi's balanced confidence-decay memory bank (peers.md §7.3), with the released code's defects
fixed (§7.5 items 2–4): slots hold (feature, confidence, refreshed) together, refresh is tracked by
flag (not by matching confidence values), and prototypes average filled slots only.
"""

from __future__ import annotations

import torch


class MemoryBank:
    """K classes × S slots of D-d features; empty slots have confidence −inf."""

    def __init__(self, num_classes: int, slots: int, dim: int, device):
        self.feat = torch.zeros(num_classes, slots, dim, device=device)  # [K, S, D]
        self.conf = torch.full((num_classes, slots), float("-inf"), device=device)  # [K, S]
        self.fresh = torch.zeros(num_classes, slots, dtype=torch.bool, device=device)

    @torch.no_grad()
    def push(self, feats: torch.Tensor, labels: torch.Tensor, conf: torch.Tensor) -> None:
        """Offer candidates ``feats [n, D]`` of class ``labels [n]`` with confidence ``conf [n]``.

        "Replace the lowest slot if the candidate is more confident", applied candidate by
        candidate, always ends with the S most confident of (bank ∪ candidates); that top-S is
        taken directly per class. New entries are marked refreshed.
        """
        s = self.conf.shape[1]
        for k in labels.unique().tolist():
            sel = labels == k
            all_conf = torch.cat([self.conf[k], conf[sel].float()])
            all_feat = torch.cat([self.feat[k], feats[sel].float()])
            all_fresh = torch.cat([self.fresh[k], torch.ones(int(sel.sum()), dtype=torch.bool,
                                                             device=all_conf.device)])
            top = torch.topk(all_conf, s, sorted=True).indices
            self.conf[k], self.feat[k], self.fresh[k] = all_conf[top], all_feat[top], all_fresh[top]

    def decay(self, beta: float) -> None:
        """Every ``decay_step`` iterations: slots not refreshed since the last decay lose β."""
        stale = ~self.fresh & torch.isfinite(self.conf)
        self.conf[stale] *= beta
        self.fresh.zero_()

    def prototypes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(c [K, D] mean of filled slots, filled-class mask bool [K])."""
        filled = torch.isfinite(self.conf)  # [K, S]
        n = filled.sum(dim=1)
        c = (self.feat * filled.unsqueeze(2)).sum(dim=1) / n.clamp_min(1).unsqueeze(1)
        return c, n > 0

    def state_dict(self) -> dict:
        return {"feat": self.feat.clone(), "conf": self.conf.clone(), "fresh": self.fresh.clone()}

    def load_state_dict(self, s: dict) -> None:
        dev = self.feat.device
        self.feat, self.conf, self.fresh = (s[k].to(dev) for k in ("feat", "conf", "fresh"))
