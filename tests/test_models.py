"""WRN-28-2 as specified, EMA schedule, torchvision backbones from local weights only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from daso_ray.config import ModelConfig
from daso_ray.errors import UserError
from daso_ray.models import build_model
from daso_ray.models.ema import EMA
from daso_ray.models.wrn import WideResNet


def test_wrn28_2_shape_and_parameter_count():
    net = WideResNet(10)
    n = sum(p.numel() for p in net.parameters())
    assert 1_450_000 < n < 1_480_000  # "about 1.5M" (DASO paper, Oh et al., CVPR 2022)
    net.eval()
    logits, z = net(torch.randn(1, 3, 32, 32))  # batch of 1: flatten(1), not squeeze()
    assert logits.shape == (1, 10) and z.shape == (1, 128)
    assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.1 for m in net.modules()) == 25
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs) and len(convs) == 1 + 12 * 2 + 3  # stem, blocks, shortcuts
    assert torch.equal(net.fc.bias, torch.zeros(10))


def test_first_block_shortcut_reads_activated_input():
    net = WideResNet(10)
    first, second = net.blocks[0], net.blocks[1]
    assert first.abr and not second.abr and first.shortcut is not None
    x = torch.randn(2, 16, 8, 8)
    first.eval()
    expect = first.conv2(first.mid(first.conv1(first.pre(x)))) + first.shortcut(first.pre(x))
    assert torch.allclose(first(x), expect)


def test_ema_schedule_params_and_buffers():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(4.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model, 0)  # d_0 = 0: an exact copy
    assert torch.equal(ema.module[0].weight, model[0].weight)
    old = ema.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(2.0)
        model[1].running_mean.fill_(8.0)
    ema.update(model, 1)  # d_1 = min(1 - 1/2, 0.9) = 0.5
    assert torch.allclose(ema.module[0].weight, 0.5 * old + 0.5 * model[0].weight)
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 6.0))
    assert int(ema.module[1].num_batches_tracked) == 7  # integer buffers are copied
    ema.update(model, 100)  # d = 0.9 cap
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 0.9 * 6.0 + 0.1 * 8.0))


def test_resnet34_loads_local_weights_and_has_512_features(tmp_path):
    import torchvision

    ref = torchvision.models.resnet34(weights=None)
    path = tmp_path / "r34.pth"
    torch.save(ref.state_dict(), path)
    net = build_model(ModelConfig(arch="resnet34", pretrained_path=str(path)), 7, balanced_head=True)
    assert torch.equal(net.body.conv1.weight, ref.conv1.weight)
    assert net.feature_dim == 512 and net.fc_bal.out_features == 7
    net.eval()
    logits, z = net(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, 7) and z.shape == (1, 512)


def test_pretrained_weights_errors(tmp_path):
    with pytest.raises(UserError, match="model.pretrained_path: .*not found"):
        build_model(ModelConfig(arch="resnet34", pretrained_path=str(tmp_path / "no.pth")), 3)
    bad = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="does not match"):
        build_model(ModelConfig(arch="resnet34", pretrained_path=str(bad)), 3)
