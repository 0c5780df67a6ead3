"""Model factory from ``cfg.model`` (and the algorithm's need for a second, balanced head)."""

from __future__ import annotations

from torch import nn

from daso_ray.config import ModelConfig
from daso_ray.errors import UserError

WRN = {"wrn28_2": (28, 2), "wrn10_1": (10, 1), "wrn16_2": (16, 2)}


def build_model(cfg: ModelConfig, num_classes: int, balanced_head: bool = False) -> nn.Module:
    """A network with ``forward(x) -> (logits, z)``, ``features(x)``, ``fc`` and optional ``fc_bal``.

    ``fc_bal`` is the second (balanced) linear head of ACR/SeMi (``fc1`` in
    Gank0078/ACR ``train.py`` and pywin/SeMi ``train_semi.py``), Xavier-initialised like ``fc``.
    ``num_classes`` comes from the prepared data; ``model.num_classes``, when set, must agree.
    """
    if cfg.num_classes is not None and cfg.num_classes != num_classes:
        raise UserError(f"model.num_classes: {cfg.num_classes} but the data has {num_classes} classes "
                        "— remove model.num_classes (it is derived from the data) or fix data.root")
    if cfg.arch in WRN:
        from daso_ray.models.wrn import WideResNet

        net = WideResNet(num_classes, *WRN[cfg.arch])
    else:
        from daso_ray.models.backbones import TorchvisionNet

        net = TorchvisionNet(cfg.arch, num_classes, cfg.pretrained_path)
    if balanced_head:
        net.fc_bal = nn.Linear(net.feature_dim, num_classes)
        nn.init.xavier_normal_(net.fc_bal.weight)
        nn.init.zeros_(net.fc_bal.bias)
    return net

