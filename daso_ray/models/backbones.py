"""torchvision ResNet-34/50 as ``(logits, feature)`` networks (Semi-Aves: ImageNet-pretrained
ResNet-34 in DASO, Oh et al., CVPR 2022, Sec. 4.1 and App. C.2).

Pretrained weights come only from a local file named in ``model.pretrained_path``, read with
``torch.load(weights_only=True)``; nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from daso_ray.errors import UserError


class TorchvisionNet(nn.Module):
    def __init__(self, arch: str, num_classes: int, pretrained_path: str | None = None):
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None)
        if pretrained_path:
            load_backbone(net, pretrained_path)
        self.feature_dim = net.fc.in_features  # 512 (ResNet-34) or 2048 (ResNet-50)
        net.fc = nn.Identity()
        self.body = net
        self.fc = nn.Linear(self.feature_dim, num_classes)
        nn.init.xavier_normal_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] -> [n, D]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(x)
        return self.fc(z), z


def load_backbone(net: nn.Module, path: str) -> None:
    """Load an ImageNet state dict (the classifier ``fc.*`` is dropped: K differs)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model.pretrained_path: {p} not found — download the torchvision ImageNet "
                        "weights once and point this key at the local .pth file")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"model.pretrained_path: {p} is not a readable weights file ({exc})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch: another architecture's weights
        first = str(exc).strip().splitlines()[-1].strip()
        raise UserError(f"model.pretrained_path: {p} does not match {type(net).__name__}: {first}") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise UserError(f"model.pretrained_path: {p} does not match {type(net).__name__}: "
                        f"{len(missing)} missing, {len(unexpected)} unexpected keys "
                        f"(e.g. {(missing + unexpected)[0]})")
