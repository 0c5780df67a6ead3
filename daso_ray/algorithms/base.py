"""Algorithm contract: ``step(batch, t, nets) -> StepOut``; the loop does backward/step/EMA.

An algorithm owns its state (queues, priors, memory banks) and exposes it through
``state_dict``/``load_state_dict`` so the checkpoint holds everything that changes a result. It
declares its name, config section and searched iteration keys (:class:`Algorithm`) and is found by
name through :mod:`daso_ray.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from daso_ray.dist import LOCAL, Collective

if TYPE_CHECKING:  # annotations only: the config validates sections declared by these classes
    from daso_ray.config import Config
    from daso_ray.registry import Strict


@dataclass
class Context:
    """What an algorithm may know about the run (never the unlabeled labels)."""

    num_classes: int
    labeled_counts: torch.Tensor  # long [K], N_k of the labeled split
    iterations: int  # T_max
    device: torch.device
    seed: int = 0
    dist: Collective = LOCAL  # data-parallel collectives; identities in a single process (daso_ray.dist)

    log_prior: torch.Tensor = field(init=False, repr=False)  # log π_l, float [K] on ``device``

    def __post_init__(self) -> None:
        """log π_l: labeled class frequencies normalised to sum 1, computed once — a host ->
        device copy per step would stall a GPU step, and a lazy property would break a compiled
        step's graph on its first call."""
        pi = self.labeled_counts.double() / self.labeled_counts.sum()
        self.log_prior = pi.clamp_min(1e-12).log().float().to(self.device)


@dataclass
class Nets:
    model: nn.Module  # the online network (possibly compiled)
    ema: nn.Module  # the EMA teacher, eval mode unless an algorithm switches it


@dataclass
class StepOut:
    loss: torch.Tensor  # scalar, what the loop back-propagates
    logs: dict[str, torch.Tensor] = field(default_factory=dict)  # scalars, averaged per report
    pl: torch.Tensor | None = None  # long [muB]: final pseudo-label argmax, for the pl/* diagnostics


@dataclass
class Parts:
    """One forward pass over [x_l; u_w; u_s(; u_s2)] split back per view: BN statistics cover the whole
    batch, nothing is interleaved (as in ytaek-oh/daso, ``lib/algorithm/fixmatch.py``)."""

    logits_l: torch.Tensor  # [B, K]
    feat_l: torch.Tensor  # [B, D]
    logits_w: torch.Tensor | None = None  # [muB, K]
    feat_w: torch.Tensor | None = None
    logits_s: list[torch.Tensor] = field(default_factory=list)  # one [muB, K] per strong view
    feat_s: list[torch.Tensor] = field(default_factory=list)


def forward_parts(model: nn.Module, batch: dict) -> Parts:
    """One forward over every view, so BN statistics cover the whole (1 + 2mu)B batch (no interleave)."""
    strong = [batch[k] for k in ("x_s", "x_s2") if k in batch]
    views = [batch["x"]] + ([batch["x_w"], *strong] if "x_w" in batch else [])
    logits, feat = model(torch.cat(views) if len(views) > 1 else views[0])
    sizes = [len(v) for v in views]
    lo, fe = logits.float().split(sizes), feat.float().split(sizes)
    if len(views) == 1:
        return Parts(lo[0], fe[0])
    return Parts(lo[0], fe[0], lo[1], fe[1], list(lo[2:]), list(fe[2:]))


class Algorithm:
    """Base class. Declarations read without an instance: ``name`` (``algorithm.name``),
    ``section`` (its config section, ``algorithm.<name>``, or None) and ``scaled_keys`` (keys of the
    section counted in iterations, shrunk with the run by ``search --smoke``). ``uses_unlabeled``,
    ``strong_views`` and ``balanced_head`` tell the loop what to build."""

    name = "base"
    section: type[Strict] | None = None
    scaled_keys: tuple[str, ...] = ()
    # Config keys (dotted) that change nothing in the first pretrain_iters(cfg) iterations: runs
    # that differ only in them fork from one shared warm-up (daso_ray.engine.warmup).
    fork_keys: tuple[str, ...] = ()
    uses_unlabeled = True
    strong_views = 1
    balanced_head = False

    def __init__(self, cfg: Config, ctx: Context):
        self.cfg, self.ctx = cfg, ctx

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Cross-key checks of a config that trains this algorithm; raise ValueError whose message
        starts with the key to fix (``algorithm.<name>.<key>: ...``)."""

    @classmethod
    def pretrain_iters(cls, cfg: Config) -> int:
        """Iterations during which ``cfg`` trains exactly as the base learner (DASO's P), whatever
        this algorithm's own keys: a verification comparing configs must run past them."""
        return 0

    @classmethod
    def superset(cls, cfg: Config, domains: dict[str, list]) -> dict[str, Any]:
        """Overrides ({dotted key: value}) that make a warm-up of ``cfg`` keep the state every run
        needs whose fork keys take values in ``domains`` ({dotted key: candidate values})."""
        return {}

    @classmethod
    def superset_problem(cls, cfg: Config, warm: Config) -> str | None:
        """Why a run of ``cfg`` cannot rebuild its state from a warm-up of ``warm`` (None: it can)."""
        return None

    def from_warmup(self, state: dict, step: int) -> dict:
        """This run's own state (as :meth:`state_dict` gives it) at iteration ``step``, rebuilt
        from a warm-up's; the base learner's state is the same for every fork key."""
        return state

    def step(self, batch: dict, t: int, nets: Nets) -> StepOut:
        raise NotImplementedError

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Evaluation logits [n, K] (SeMi overrides: its balanced head)."""
        return model(x)[0]

    def summary(self) -> dict:
        """Values this run resolved from its config, recorded in results.json (DASO: T_dist)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def labeled_ce(logits_l: torch.Tensor, y: torch.Tensor, log_prior: torch.Tensor, tau: float):
    """L_s = mean CE(z + τ_LA log π_l, y) (logit adjustment, Menon et al., ICLR 2021, as
    ytaek-oh/daso ``lib/algorithm/fixmatch.py`` applies it for FixMatch+LA; τ_LA = 0 is plain CE)."""
    if tau:
        logits_l = logits_l + tau * log_prior
    return nn.functional.cross_entropy(logits_l, y)


def masked_hard_ce(logits_s: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(1/μB) Σ w_u CE(z_s, ŷ): divided by the FULL unlabeled batch, not by the mask count
    (FixMatch, Sohn et al., NeurIPS 2020, Sec. 2.2; ytaek-oh/daso ``lib/algorithm/fixmatch.py``)."""
    ce = nn.functional.cross_entropy(logits_s, target, reduction="none")
    return (ce * weight).sum() / len(logits_s)
