"""Sources in their real formats -> prepared Arrow stores (pixel-exact), manifests, CLI errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_cifar, write_folder, write_semi_aves, write_stl
from PIL import Image

from daso_ray.config import DataConfig
from daso_ray.data.catalog import load_source
from daso_ray.data.ffcv_io import prepare_source, read_manifest
from daso_ray.data.module import TrainData
from daso_ray.data.store import Store
from daso_ray.errors import UserError


def _prepare(dataset, src, out):
    return prepare_source(load_source(dataset, src), out, with_ffcv=False, workers=1)


def test_cifar10_round_trip(tmp_path):
    folder, images, labels = write_cifar(tmp_path, 10)
    m = _prepare("cifar10", folder, tmp_path / "out")
    store = Store(tmp_path / "out" / "train.arrow")
    np.testing.assert_array_equal(store.pixels(np.arange(len(store))), images)
    np.testing.assert_array_equal(store.labels, labels)
    assert m["splits"]["train"]["class_counts"] == [6] * 10 and m["splits"]["test"]["count"] == 20
    read_manifest(tmp_path / "out", verify=True)


def test_cifar100_labels(tmp_path):
    folder, _, labels = write_cifar(tmp_path, 100, per_class_train=2, per_class_test=1)
    src = load_source("cifar100", folder)
    assert src.num_classes == 100 and np.array_equal(src.splits["train"].labels, labels)


def test_stl10_column_major_decoding(tmp_path):
    folder, train = write_stl(tmp_path)
    src = load_source("stl10", folder)
    np.testing.assert_array_equal(src.splits["train"].images, train)
    assert src.splits["train"].labels.tolist() == [i % 10 for i in range(20)]
    assert (src.splits["unlabeled"].labels == -1).all() and len(src.splits["unlabeled"]) == 30


def test_semi_aves_lists_and_jpeg_store(tmp_path):
    folder = write_semi_aves(tmp_path)
    m = _prepare("semi_aves", folder, tmp_path / "out")
    assert m["num_classes"] == 3 and m["mode"] == "jpeg"
    assert m["splits"]["unlabeled"]["count"] == 8 and m["extra"]["unlabeled_in_count"] == 5
    with Image.open(io.BytesIO(Store(tmp_path / "out" / "train.arrow").jpeg(0))) as img:
        assert min(img.size) == 224  # shorter side
    for pool, n in (("in", 5), ("in+out", 8)):
        td = TrainData(DataConfig(dataset="semi_aves", root=str(tmp_path / "out"), loader="torch",
                                  num_valid=0, unlabeled_pool=pool, image_size=224), 0, "cpu")
        assert len(td.split.unlabeled) == n


def test_folder_source(tmp_path):
    src = load_source("folder", write_folder(tmp_path))
    assert src.class_names == ["cat", "dog"]
    assert len(src.splits["unlabeled"]) == 4 and src.splits["train"].labels.tolist() == [0, 0, 0, 1, 1, 1]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "daso_ray.prepare", *map(str, args)],
                          capture_output=True, text=True)


def test_missing_source_file_one_line_nonzero_no_output(tmp_path):
    folder, _, _ = write_cifar(tmp_path, 10)
    (folder / "data_batch_3").unlink()
    r = _cli("cifar10", "--src", folder, "--out", tmp_path / "out", "--no-ffcv")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "data_batch_3" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_corrupt_sources_name_the_file(tmp_path):
    folder, _ = write_stl(tmp_path)
    with open(folder / "unlabeled_X.bin", "ab") as f:
        f.write(b"xx")  # truncated/corrupt: not a whole number of images
    with pytest.raises(UserError, match="unlabeled_X.bin"):
        load_source("stl10", folder)
    cifar, _, _ = write_cifar(tmp_path / "c", 10)
    (cifar / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="test_batch"):
        load_source("cifar10", cifar)


def test_malicious_pickle_is_refused(tmp_path):
    cifar, _, _ = write_cifar(tmp_path, 10)
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (cifar / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(UserError, match="test_batch"):
        load_source("cifar10", cifar)


def test_existing_output_is_kept_without_force(tmp_path, digits_root):
    before = json.loads((digits_root / "manifest.json").read_text())
    r = _cli("digits", "--out", digits_root, "--no-ffcv")
    assert r.returncode == 2 and "--force" in r.stderr
    assert json.loads((digits_root / "manifest.json").read_text()) == before


def test_checksum_mismatch_is_reported(tmp_path):
    folder, _, _ = write_cifar(tmp_path, 10)
    out = tmp_path / "out"
    _prepare("cifar10", folder, out)
    with open(out / "test.arrow", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(UserError, match="checksum mismatch.*test.arrow"):
        read_manifest(out, verify=True)
