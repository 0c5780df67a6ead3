"""Tiny fixtures written in the real source formats (no network, ever)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NUMBA_THREADING_LAYER", "tbb")


def write_cifar(root: Path, num_classes: int, per_class_train: int = 6, per_class_test: int = 2,
                seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray]:
    """CIFAR python-pickle folder; returns (folder, train images NHWC, train labels)."""
    rng = np.random.default_rng(seed)
    key = b"labels" if num_classes == 10 else b"fine_labels"
    folder = root / ("cifar-10-batches-py" if num_classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True)
    n = num_classes * per_class_train
    labels = rng.permutation(np.repeat(np.arange(num_classes), per_class_train))
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    flat = images.transpose(0, 3, 1, 2).reshape(n, -1)  # CIFAR rows: R plane, G plane, B plane
    names = [f"data_batch_{i}" for i in range(1, 6)] if num_classes == 10 else ["train"]
    for part, name in zip(np.array_split(np.arange(n), len(names)), names, strict=True):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": flat[part], key: labels[part].tolist()}, f, protocol=2)
    nt = num_classes * per_class_test
    test = rng.integers(0, 256, (nt, 3 * 32 * 32), dtype=np.uint8)
    with open(folder / ("test_batch" if num_classes == 10 else "test"), "wb") as f:
        pickle.dump({b"data": test, key: np.repeat(np.arange(num_classes), per_class_test).tolist()}, f)
    return folder, images, labels


def write_stl(root: Path, n_train=20, n_test=10, n_unl=30) -> tuple[Path, np.ndarray]:
    """STL-10 binary folder (column-major images, labels 1..10); returns (folder, train NHWC)."""
    rng = np.random.default_rng(1)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    out = {}
    for stem, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unl)):
        img = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
        img.transpose(0, 3, 2, 1).tofile(folder / f"{stem}_X.bin")
        if stem != "unlabeled":
            (np.arange(n) % 10 + 1).astype(np.uint8).tofile(folder / f"{stem}_y.bin")
        out[stem] = img
    return folder, out["train"]


def _jpeg(path: Path, rng, size=(40, 30)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def write_semi_aves(root: Path, k: int = 3) -> Path:
    """Semi-Aves release layout: list files of 'relative/path.jpg class_id' plus the images."""
    rng = np.random.default_rng(2)
    folder = root / "semi_aves"
    lists = {"l_train_val.txt": [(f"trainval_images/{c}/{i}.jpg", c) for c in range(k) for i in range(4)],
             "test.txt": [(f"test/{c}/{i}.jpg", c) for c in range(k) for i in range(2)],
             "u_train_in.txt": [(f"u_train_in/{i}.jpg", -1) for i in range(5)],
             "u_train_out.txt": [(f"u_train_out/{i}.jpg", -1) for i in range(3)]}
    for name, rows in lists.items():
        for rel, _ in rows:
            _jpeg(folder / rel, rng)
        (folder / name).write_text("".join(f"{rel} {c}\n" for rel, c in rows))
    return folder


def write_folder(root: Path) -> Path:
    rng = np.random.default_rng(3)
    folder = root / "mydata"
    for c in ("cat", "dog"):
        for i in range(3):
            _jpeg(folder / "labeled" / c / f"{i}.png", rng)
        _jpeg(folder / "test" / c / "t.jpg", rng)
    for i in range(4):
        _jpeg(folder / "unlabeled" / "deep" / f"n{i}" / f"{i}.jpg", rng)
    return folder


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    """Prepared digits (Arrow only: the FFCV path has its own small test module)."""
    from daso_ray.data.catalog import load_source
    from daso_ray.data.ffcv_io import prepare_source

    out = tmp_path_factory.mktemp("prepared") / "digits"
    prepare_source(load_source("digits", None), out, with_ffcv=False)
    return out
