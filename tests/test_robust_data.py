"""Issue 13, data side: real users' inputs (hidden folders, Windows list files, small sources,
imbalance settings on folder / STL-10 / Semi-Aves data, a minimal folder config).

Each test writes a tiny input in the real format (PIL image folders, STL-10 binaries, Semi-Aves
lists) and asserts the value the issue names as right, or one ``error:`` line naming the key/file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_semi_aves, write_stl

from daso_ray.config import DataConfig, from_dict, load_config
from daso_ray.data.catalog import load_source
from daso_ray.data.ffcv_io import prepare_source
from daso_ray.data.module import TrainData
from daso_ray.errors import UserError
from daso_ray.prepare import main as prepare_main

REPO = Path(__file__).resolve().parents[1]


def _image(path: Path, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path)


def write_counts(root: Path, labeled: dict[str, int], unlabeled: int = 6) -> Path:
    """A user's folder: ``labeled/<class>`` with the given counts, 1 test image per class."""
    for c, (name, n) in enumerate(labeled.items()):
        for i in range(n):
            _image(root / "labeled" / name / f"{i}.png", 100 * c + i)
        _image(root / "test" / name / "t.jpg", 999 - c)
    for i in range(unlabeled):
        _image(root / "unlabeled" / f"u{i}.jpg", 5000 + i)
    return root


def _prepared(src: Path, out: Path) -> Path:
    prepare_source(load_source("folder", src), out, with_ffcv=False, workers=1)
    return out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


# --- case 2: hidden entries are not data ---------------------------------------------------------

def test_hidden_folders_and_files_are_ignored_at_every_depth(tmp_path, capsys):
    src = write_counts(tmp_path / "src", {"a": 3, "b": 2, "c": 2})
    _image(src / "labeled" / ".ipynb_checkpoints" / "x.jpg", 1)  # the phantom class of the report
    _image(src / "labeled" / "a" / ".ipynb_checkpoints" / "x.jpg", 2)  # not an image of class a
    _image(src / "test" / ".ipynb_checkpoints" / "t.jpg", 3)
    _image(src / "unlabeled" / ".cache" / "u.jpg", 4)
    (src / "labeled" / "b" / "._0.png").write_bytes(b"\x00\x05\x16\x07 Mac OS X resource fork")
    source = load_source("folder", src)
    assert source.num_classes == 3 and source.class_names == ["a", "b", "c"]
    assert source.splits["train"].labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert len(source.splits["unlabeled"]) == 6 and len(source.splits["test"]) == 3
    assert not any(part.startswith(".") for p in source.splits["train"].paths for part in p.parts[-3:])
    # End to end: the resource fork is skipped with a note, prepare succeeds with K=3.
    assert prepare_main(["folder", "--src", str(src), "--out", str(tmp_path / "out"), "--no-ffcv",
                         "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "note: skipped 5 hidden" in err and "1 of them macOS resource forks" in err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["num_classes"] == 3 and manifest["splits"]["train"]["class_counts"] == [3, 2, 2]


def test_class_folder_without_images_is_one_error(tmp_path):
    src = write_counts(tmp_path / "src", {"a": 2, "b": 2})
    (src / "labeled" / "empty").mkdir()
    _image(src / "labeled" / "empty" / ".ipynb_checkpoints" / "x.jpg", 0)  # hidden: still empty
    with pytest.raises(UserError, match=r"'.*labeled/empty': a class folder without images"):
        load_source("folder", src)


# --- case 7: list files from Windows editors ---------------------------------------------------

def test_semi_aves_lists_with_bom_and_crlf(tmp_path):
    src = write_semi_aves(tmp_path)
    want = load_source("semi_aves", src)
    for name in ("l_train_val.txt", "test.txt", "u_train_in.txt"):
        text = (src / name).read_text()
        (src / name).write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    (src / "u_train_out.txt").write_bytes((src / "u_train_out.txt").read_text().encode("utf-16"))
    got = load_source("semi_aves", src)
    for split in ("train", "test", "unlabeled"):
        assert got.splits[split].paths == want.splits[split].paths
        assert got.splits[split].labels.tolist() == want.splits[split].labels.tolist()


def test_list_file_errors_show_invisible_characters(tmp_path):
    src = write_semi_aves(tmp_path)
    lines = (src / "test.txt").read_text().splitlines()
    lines[1] = lines[1].replace(".jpg", ".jpg\u200b", 1)  # a zero-width space after the name
    (src / "test.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as err:
        load_source("semi_aves", src)
    msg = str(err.value)
    assert "\\u200b'" in msg and "\u200b" not in msg and "'" + str(src / "test.txt") + "'" in msg
    assert "\n" not in msg
    (src / "test.txt").write_bytes("test/0/0.jpg 0\n".encode("cp1252") + b"caf\xe9.jpg 1\n")
    with pytest.raises(UserError, match=r"test.txt': not UTF-8 text .* save it as UTF-8"):
        load_source("semi_aves", src)


# --- case 8: prepare checks before it publishes -------------------------------------------------

def test_prepare_too_small_source_names_src_and_publishes_nothing(tmp_path, capsys):
    src, _ = write_stl(tmp_path / "src")  # 2 training images per class; the protocol needs 500
    out = tmp_path / "out"
    assert prepare_main(["stl10", "--src", str(src), "--out", str(out), "--no-ffcv"]) == 2
    line = _one_error_line(capsys)
    assert f"--src '{src}'" in line and "class 0 has 2 labeled training images" in line
    assert "needs 500 per class (N_1 450 + validation 50)" in line and "data." not in line
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_failing_finish_publishes_nothing_and_keeps_the_old_folder(tmp_path):
    src = write_counts(tmp_path / "src", {"a": 2, "b": 2})
    out = _prepared(src, tmp_path / "out")
    before = (out / "manifest.json").read_text()

    def finish(folder, manifest):
        raise UserError("a split record failed")

    with pytest.raises(UserError, match="split record"):
        prepare_source(load_source("folder", src), out, with_ffcv=False, workers=1, force=True,
                       finish=finish)
    assert (out / "manifest.json").read_text() == before and not list(tmp_path.glob(".out.*"))


# --- case 4: imbalance settings act, or are refused in one line ---------------------------------

def _folder_data(root: Path, **kw) -> DataConfig:
    """Explicit ``num_valid`` (0 unless given): these cases must not depend on case 5's defaults."""
    return DataConfig(dataset="folder", root=str(root), loader="torch", **{"num_valid": 0, **kw})


def test_folder_labeled_profile_is_honoured_ranked_by_own_counts(tmp_path):
    out = _prepared(write_counts(tmp_path / "src", {"ant": 5, "bee": 30}), tmp_path / "out")
    natural = TrainData(_folder_data(out), 0, "cpu").split
    assert natural.counts["labeled"] == [5, 30]
    split = TrainData(_folder_data(out, n_max_l=10, imb_ratio_l=2), 0, "cpu").split
    assert split.counts["labeled"] == [5, 10]  # bee (30 images) is the head: 10, ant the tail: 5
    record = json.loads(split.path.read_text())
    assert (record["gamma_l"], record["spec"]["n_max_l"], record["scenario"]) == (2, 10, None)
    assert record["counts"]["labeled"] == [5, 10]
    with pytest.raises(UserError, match="class 0 gets 0 labeled images"):  # int(3 / 5) = 0
        TrainData(_folder_data(out, n_max_l=3, imb_ratio_l=5), 0, "cpu")
    assert TrainData(_folder_data(out, n_max_l=3, imb_ratio_l=3), 0, "cpu").split.counts[
        "labeled"] == [1, 3]
    with pytest.raises(UserError, match="data.n_max_l: .* class 0 .* has 5"):
        TrainData(_folder_data(out, n_max_l=20, imb_ratio_l=2), 0, "cpu")
    with pytest.raises(UserError, match="data.imb_ratio_l: 4 needs data.n_max_l"):
        TrainData(_folder_data(out, imb_ratio_l=4), 0, "cpu")


def test_separate_unlabeled_split_is_capped_or_refused(tmp_path):
    src, _ = write_stl(tmp_path / "src", n_unl=200)  # 2 labeled images per class, 200 unlabeled
    out = tmp_path / "out"
    prepare_source(load_source("stl10", src), out, with_ffcv=False, workers=1)

    def stl(**kw):
        return TrainData(DataConfig(dataset="stl10", root=str(out), loader="torch", n_max_l=2,
                                    imb_ratio_l=2, num_valid=0, **kw), 0, "cpu").split

    every = stl()
    assert len(every.unlabeled) == 200 and every.counts["labeled"] == [2] + [1] * 9
    capped = stl(n_max_u=5)  # M_1 = 5 per class: 50 of the 200 unknown-label images, seeded
    assert len(capped.unlabeled) == 50 and len(set(capped.unlabeled.tolist())) == 50
    assert capped.unlabeled.tolist() == stl(n_max_u=5).unlabeled.tolist()
    record = json.loads(capped.path.read_text())
    assert (record["scenario"], record["gamma_u"], record["gamma_l"]) == (None, None, 2)
    assert record["spec"]["n_max_u"] == 5 and len(record["indices"]["unlabeled"]) == 50
    with pytest.raises(UserError, match=r"data.n_max_u: 50 per class x 10 classes = 500 .* has 200 "
                                        r"— set data.n_max_u to at most 20"):
        stl(n_max_u=50)
    with pytest.raises(UserError, match="data.imb_ratio_u: .* no labels"):
        stl(scenario="reversed", imb_ratio_u=10)
    # gamma_l 1 caps every class at N_1 (the setting used to be dropped for STL-10).
    assert TrainData(DataConfig(dataset="stl10", root=str(out), loader="torch", n_max_l=1,
                                imb_ratio_l=1, num_valid=0), 0, "cpu").split.counts["labeled"] == [1] * 10


def test_folder_unlabeled_scenario_is_refused(tmp_path):
    out = _prepared(write_counts(tmp_path / "src", {"a": 3, "b": 3}), tmp_path / "out")
    with pytest.raises(UserError, match="data.scenario: scenario 'consistent' .* no labels"):
        TrainData(_folder_data(out, scenario="consistent"), 0, "cpu")
    with pytest.raises(UserError, match="data.unlabeled_pool: 'in\\+out' chooses Semi-Aves's"):
        TrainData(_folder_data(out, unlabeled_pool="in+out"), 0, "cpu")  # was silently ignored


def test_semi_aves_labeled_set_is_the_benchmarks_own(tmp_path):
    out = tmp_path / "out"
    prepare_source(load_source("semi_aves", write_semi_aves(tmp_path)), out, with_ffcv=False,
                   workers=1)
    for ok in (dict(), dict(n_max_l=1, imb_ratio_l=1)):  # default; the shipped files' placeholder
        split = TrainData(DataConfig(dataset="semi_aves", root=str(out), loader="torch", **ok), 0,
                          "cpu").split
        assert split.counts["labeled"] == [4, 4, 4] and split.record()["gamma_l"] is None
    with pytest.raises(UserError, match="data.n_max_l: 2 .* Semi-Aves's labeled set"):
        TrainData(DataConfig(dataset="semi_aves", root=str(out), loader="torch", n_max_l=2), 0, "cpu")


# --- case 5: dataset defaults come from the dataset ---------------------------------------------

def test_minimal_folder_config_trains_with_the_datas_own_split(tmp_path):
    out = _prepared(write_counts(tmp_path / "src", {"a": 30, "b": 5}), tmp_path / "out")
    cfg = from_dict({"data": {"dataset": "folder", "root": str(out), "loader": "torch"}})
    assert (cfg.data.num_valid, cfg.data.n_max_l, cfg.data.scenario) == (0, None, "uniform")
    split = TrainData(cfg.data, 0, "cpu").split
    assert split.counts["labeled"] == [30, 5] and len(split.unlabeled) == 6
    assert from_dict({"data": {"dataset": "cifar100"}}).data.n_max_l == 150
    assert from_dict({"data": {"dataset": "stl10"}}).data.root == "data/stl10"
    # A hold-out too large is blamed on data.num_valid, with the largest value that fits.
    with pytest.raises(UserError, match=r"data.num_valid: 5000 holds out 2500 images of every class "
                                        r"but class 1 has only 5 .* at most 8"):
        TrainData(_folder_data(out, num_valid=5000), 0, "cpu")


def test_shipped_folder_example_config_and_search_space(tmp_path):
    from daso_ray.study.load import load_search

    out = _prepared(write_counts(tmp_path / "src", {"a": 40, "b": 22, "c": 30}), tmp_path / "out")
    cfg = load_config(REPO / "configs" / "folder_example.yaml", [f"data.root={out}"])
    assert TrainData(cfg.data, 0, "cpu").split.counts["labeled"] == [40, 22, 30]
    spec, base = load_search(REPO / "search_spaces" / "folder_example.yaml")
    assert base.data.dataset == "folder" and base.data.num_valid == 60
    assert spec.objective.min_resolution >= 100 / base.data.num_valid
    # Its scenarios fit a folder of this size: 20 per class held out ([20, 2, 10] left), then the
    # profile 20 / int(20 * 10 ** -0.5) = 6 / 2 over the classes ranked a, c, b.
    scn = spec.scenarios[0]
    data = base.data.model_copy(update={"root": str(out), "n_max_l": scn.n1,
                                        "imb_ratio_l": scn.gamma_l})
    assert TrainData(DataConfig(**data.model_dump()), 0, "cpu").split.counts["labeled"] == [20, 2, 6]
