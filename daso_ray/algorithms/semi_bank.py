"""SeMi's balanced confidence-decay memory bank (Wang et al., ACM MM 2025, arXiv 2501.06004; code
`pywin/SeMi` ``utils_sup/memorybank.py``), with three defects of that code fixed (docs/algorithms.md,
"SeMi", defects 2-4): slots hold (feature, confidence, refreshed) together, refresh is tracked by
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

    def push(self, feats: torch.Tensor, labels: torch.Tensor, conf: torch.Tensor,
             valid: torch.Tensor) -> None:
        """Offer candidates ``feats [n, D]`` of class ``labels [n]`` with confidence ``conf [n]``;
        only those with ``valid [n]`` (bool) take part.

        "Replace the lowest slot if the candidate is more confident", applied candidate by
        candidate, always ends with the S most confident of (bank ∪ candidates); that top-S is
        taken directly, for every class at once with fixed-size tensors (no host sync): each
        class ranks its S slots beside all n candidates, the others' masked to −inf. New entries
        are marked refreshed; a slot left empty keeps a zero feature.
        """
        with torch.no_grad():  # a context, not a decorator: traceable in a compiled step
            k, s = self.conf.shape
            member = (labels.view(1, -1) == torch.arange(k, device=labels.device).view(-1, 1)) & valid
            offered = torch.where(member, conf.float().view(1, -1), float("-inf"))  # [K, n]
            top_conf, top = torch.topk(torch.cat([self.conf, offered], 1), s, dim=1, sorted=True)
            from_bank = top < s  # [K, S]
            bank_feat = self.feat.gather(1, top.clamp(max=s - 1).unsqueeze(2).expand_as(self.feat))
            new_feat = feats.float()[(top - s).clamp_min(0)]  # [K, S, D]
            filled = torch.isfinite(top_conf).unsqueeze(2)
            self.feat = torch.where(from_bank.unsqueeze(2), bank_feat, new_feat * filled)
            self.fresh = torch.where(from_bank, self.fresh.gather(1, top.clamp(max=s - 1)),
                                     torch.isfinite(top_conf))
            self.conf = top_conf

    def decay(self, beta: float) -> None:
        """Every ``decay_step`` iterations: slots not refreshed since the last decay lose β."""
        stale = ~self.fresh & torch.isfinite(self.conf)
        self.conf = torch.where(stale, self.conf * beta, self.conf)
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
