"""``python -m daso_ray.smoke --root DIR``: a brief supervised run through the real data path.

It exercises prepare -> split -> loaders -> batched augmentation -> training -> evaluation with a
small CNN, and prints test top-1 and per-class recall. It is the demo's training step until the
engine (WRN-28-2, FixMatch/DASO, checkpoints) lands as ``python -m daso_ray.train``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from daso_ray.config import DataConfig
from daso_ray.errors import cli_entry


def small_cnn(num_classes: int) -> nn.Module:
    """[n, 3, 32, 32] -> logits [n, K]."""
    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                             nn.LeakyReLU(0.1), nn.MaxPool2d(2))
    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(128, num_classes))


@torch.no_grad()
def per_class_recall(model: nn.Module, batches, k: int) -> torch.Tensor:
    model.eval()
    hits, seen = torch.zeros(k), torch.zeros(k)
    for b in batches:
        pred = model(b["x"]).argmax(1)
        seen += torch.bincount(b["y"], minlength=k).float()
        hits += torch.bincount(b["y"][pred == b["y"]], minlength=k).float()
    model.train()
    return hits / seen.clamp(min=1)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daso_ray.smoke", description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="prepared digits folder")
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--loader", choices=["ffcv", "torch"], default="torch")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from daso_ray.data.module import TrainData

    torch.manual_seed(args.seed)
    data = TrainData(DataConfig(dataset="digits", root=args.root, loader=args.loader, n_max_l=30,
                                n_max_u=100, imb_ratio_l=10, imb_ratio_u=10, num_valid=100,
                                num_workers=1), seed=args.seed, device="cpu")
    k = data.num_classes
    model = small_cnn(k)
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, nesterov=True, weight_decay=5e-4)
    print(f"labeled per class {data.split.counts['labeled']}")
    start, stream = time.time(), data.labeled()
    for it in range(1, args.iterations + 1):
        b = next(stream)
        loss = nn.functional.cross_entropy(model(b["x"]), b["y"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % 100 == 0 or it == args.iterations:
            rec = per_class_recall(model, data.eval_batches("test"), k)
            print(f"iter {it:5d}  loss {loss.item():.3f}  test top1 {100 * rec.mean():.1f}%  "
                  f"tail(last 3) {100 * rec[-3:].mean():.1f}%  {time.time() - start:.0f}s")
    print("per-class recall (head -> tail):", " ".join(f"{100 * r:.0f}" for r in rec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
