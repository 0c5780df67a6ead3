"""WRN-28-2 exactly as ytaek-oh/daso ``lib/models/wrn.py`` and ``classifier.py`` (pre-activation
blocks, LeakyReLU 0.1, 128-d feature; about 1.5M parameters as the DASO paper states).

``WideResNet(K, depth, width)`` maps ``x [n, 3, H, W]`` to ``(logits [n, K], z [n, 64*width])``.
Depth 28 / width 2 is the protocol network; shallower variants (e.g. depth 10, width 1) serve the
CPU demo and tests with identical block semantics.
"""

from __future__ import annotations

import torch
from torch import nn


def _bn_act(c: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c), nn.LeakyReLU(0.1))


class Block(nn.Module):
    """Pre-activation residual block; ``activate_before_residual`` marks the first block, whose
    shortcut and residual branch both read the activated input (as the reference)."""

    def __init__(self, cin: int, cout: int, stride: int, activate_before_residual: bool = False):
        super().__init__()
        self.pre = _bn_act(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.mid = _bn_act(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if cin != cout or stride != 1:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
        self.abr = activate_before_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.pre(x)
        # Only the very first block lets the shortcut read the activated input (ytaek-oh/daso
        # ``lib/models/wrn.py``).
        short_in = act if self.abr else x
        out = self.conv2(self.mid(self.conv1(act)))
        return out + (short_in if self.shortcut is None else self.shortcut(short_in))


class WideResNet(nn.Module):
    def __init__(self, num_classes: int, depth: int = 28, width: int = 2):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        chans = [16, 16 * width, 32 * width, 64 * width]
        self.stem = nn.Conv2d(3, chans[0], 3, 1, 1, bias=False)
        blocks = []
        for stage, stride in enumerate((1, 2, 2)):
            cin, cout = chans[stage], chans[stage + 1]
            for i in range(n):
                blocks.append(Block(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                                    activate_before_residual=(stage == 0 and i == 0)))
        self.blocks = nn.Sequential(*blocks)
        self.head_act = _bn_act(chans[3])
        self.feature_dim = chans[3]
        self.fc = nn.Linear(chans[3], num_classes)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] -> z [n, D]; ``flatten(1)`` not ``squeeze()`` (the reference's
        ``squeeze()`` breaks a batch of 1)."""
        z = self.head_act(self.blocks(self.stem(x)))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(x)
        return self.fc(z), z
