"""Loader and augmentation throughput: P1 (FFCV vs torch DataLoader, same weak augmentation) and
P2 (batched strong augmentation vs per-sample torchvision v2 in DataLoader workers).

    python -m benchmarks.loaders [--n 20000] [--epochs 3] [--workers 2] [--out FILE]

Each configuration runs in a fresh process (FFCV changes torch's thread count on import), on the
same synthetic 32x32 uint8 data written through the real prepare path. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("NUMBA_THREADING_LAYER", "tbb")
BATCH = 64


def _make_data(root: Path, n: int) -> Path:
    from daso_ray.data.ffcv_io import prepare_source
    from daso_ray.data.sources import Source, SourceSplit

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.int64)
    src = Source("cifar10", 10, [str(i) for i in range(10)],
                 {"train": SourceSplit(labels, images), "test": SourceSplit(labels[:100], images[:100])})
    prepare_source(src, root / "data", workers=2)
    return root / "data"


class _PerSample(torch.utils.data.Dataset):
    """The usual torch pipeline: one sample per __getitem__, torchvision v2 ops in the workers."""

    def __init__(self, root: Path, strong: bool):
        from daso_ray.data.store import Store

        self.store, self.strong = Store(root / "train.arrow"), strong

    def __len__(self):
        return len(self.store)

    def __getitem__(self, i):
        from tests.augment_reference import strong_reference, weak_reference

        img = torch.from_numpy(self.store.pixels(np.array([i]))[0]).permute(2, 0, 1)
        img = weak_reference(img, random.random() < 0.5, random.randint(0, 8), random.randint(0, 8), 4)
        if self.strong:
            img = strong_reference(img, random)
        return img, int(self.store.labels[i])


def _time_epochs(make_iter, epochs: int) -> dict:
    t0 = time.perf_counter()
    for _ in make_iter():
        pass
    first = time.perf_counter() - t0
    rates = []
    for _ in range(epochs):
        t = time.perf_counter()
        seen = sum(len(b[0]) for b in make_iter())
        rates.append(seen / (time.perf_counter() - t))
    return {"img_per_s": float(np.median(rates)), "rates": rates, "first_epoch_s": first}


def run_one(name: str, root: Path, epochs: int, workers: int) -> dict:
    from daso_ray.data.store import Store

    n = len(Store(root / "train.arrow"))
    if name == "ffcv_weak":
        from daso_ray.data.ffcv_ops import ffcv_loader

        loader = ffcv_loader(str(root / "train.beton"), mode="raw", kind="labeled", batch_size=BATCH,
                             indices=None, num_workers=workers, seed=0, size=32, pad=4)
        return _time_epochs(lambda: iter(loader), epochs)
    if name in ("torch_weak", "torch_strong_per_sample"):
        ds = _PerSample(root, strong=name == "torch_strong_per_sample")
        dl = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=True)
        return _time_epochs(lambda: iter(dl), epochs)
    if name == "batched_strong":
        from daso_ray.data.augment import Augmenter

        torch.set_num_threads(workers)
        store = Store(root / "train.arrow")
        aug = Augmenter(0, "cpu")
        batch = 2 * BATCH  # the unlabeled batch muB

        def it():
            perm = np.random.permutation(n)
            for s in range(0, n - batch + 1, batch):
                x = torch.from_numpy(store.pixels(perm[s:s + batch])).permute(0, 3, 1, 2)
                yield (aug.strong(aug.weak(x)),)
        return _time_epochs(it, epochs)
    raise KeyError(name)


ROWS = [("P1", "ffcv_weak", "torch_weak", "FFCV loader / torch DataLoader, weak aug", 3.0),
        ("P2", "batched_strong", "torch_strong_per_sample",
         "batched strong aug / per-sample torchvision v2 in workers", 2.0)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/loaders.json"))
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, a.root, a.epochs, a.workers)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = _make_data(Path(tmp), a.n)
        res = {}
        for name in ("ffcv_weak", "torch_weak", "batched_strong", "torch_strong_per_sample"):
            out = subprocess.run([sys.executable, "-m", "benchmarks.loaders", "--one", name, "--root",
                                  str(root), "--epochs", str(a.epochs), "--workers", str(a.workers)],
                                 capture_output=True, text=True, check=True)
            res[name] = json.loads(out.stdout.strip().splitlines()[-1])
    machine = f"{platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    report = {"machine": machine, "device": "cpu", "n_images": a.n, "batch": BATCH, "workers": a.workers,
              "configs": res}
    print(f"{'config':28s} {'img/s':>10s} {'first epoch (s)':>16s}")
    for name, r in res.items():
        print(f"{name:28s} {r['img_per_s']:10.0f} {r['first_epoch_s']:16.1f}")
    for pid, num, den, what, goal in ROWS:
        ratio = res[num]["img_per_s"] / res[den]["img_per_s"]
        report[pid] = {"value": ratio, "unit": "x", "goal": goal, "device": "cpu", "detail": what}
        print(f"{pid}: {what}: {ratio:.2f}x (goal >= {goal}x) {'MET' if ratio >= goal else 'NOT MET'}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = a.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(report, indent=1))
    os.replace(tmp_out, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
