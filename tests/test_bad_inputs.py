"""Catalogue of bad inputs across the CLIs: each gives one ``error:`` line that names the offending
key or file, a non-zero exit, no traceback, and leaves nothing half-written.

Cases run in-process through each CLI's ``main`` (the same ``cli_entry`` wrapper as
``python -m``): any exception other than the one-line error fails the test with its traceback.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import write_cifar, write_semi_aves, write_stl
from tests.search_helpers import search_dict, write_base, write_search

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["configs/digits_lt_daso.yaml", "--set", "run.iterations=20", "--set", "run.eval_period=10"]


@dataclass
class Case:
    cli: str  # module under daso_ray
    argv: list  # items may be callables of the Env (paths made per test)
    names: tuple  # substrings the error line must contain (the key or file, and the fix)
    absent: tuple = ()  # paths (relative to tmp) that must not exist afterwards
    setup: object = None  # callable(env) preparing inputs
    extra: dict = field(default_factory=dict)


class Env:
    def __init__(self, tmp: Path, digits: Path):
        self.tmp, self.digits = tmp, digits

    def data(self, ffcv: bool = False) -> Path:
        """A private copy of prepared digits (with FFCV files when asked)."""
        out = self.tmp / "digits"
        if ffcv:
            from daso_ray.data.catalog import load_source
            from daso_ray.data.ffcv_io import prepare_source

            prepare_source(load_source("digits", None), out, with_ffcv=True)
        else:
            shutil.copytree(self.digits, out)
        return out


def train(*sets: str, out: str = "run") -> list:
    argv = [*TRAIN, "--out", lambda e: str(e.tmp / out)]
    for s in sets:
        argv += ["--set", s]
    return argv + ["--set", lambda e: f"data.root={e.tmp / 'digits'}"]


def resolve(argv: list, env: Env) -> list[str]:
    return [a(env) if callable(a) else a for a in argv]


def corrupt(name: str, ffcv: bool = False, truncate: bool = False):
    def setup(env: Env) -> None:
        path = env.data(ffcv) / name
        if truncate:
            with open(path, "r+b") as f:
                f.truncate(path.stat().st_size - 4096)
        else:
            with open(path, "r+b") as f:
                f.seek(4000)
                f.write(b"\xff\x00\xff")
    return setup


def copy_data(env: Env) -> None:
    env.data()


def search_file(**over):
    """A search file (over: replacements of the valid one) in tmp; returns a setup callable."""
    def setup(env: Env) -> None:
        write_base(env.tmp, env.digits)
        spec = search_dict(env.tmp / "runs", **{k: v for k, v in over.items() if k != "params_extra"})
        spec["params"].update(over.get("params_extra", {}))
        write_search(env.tmp, spec)
    return setup


def empty_search_run(env: Env) -> None:
    """A real run dir as the search writes it before any trial finishes."""
    from daso_ray.search import _prepare_run_dir
    from daso_ray.study.load import load_search

    search_file()(env)
    spec, base = load_search(env.tmp / "search.yaml")
    _prepare_run_dir(spec, base, env.tmp / "search.yaml", resume=False)


def bad_checkpoint(env: Env) -> None:
    from daso_ray.train import main

    copy_data(env)
    assert main(resolve(train(), env)) == 0
    for state in (env.tmp / "run" / "checkpoints").glob("*/state.pt"):
        state.write_bytes(b"PK\x03\x04 not a torch checkpoint")


def cifar(mutate):
    def setup(env: Env) -> None:
        folder, _, _ = write_cifar(env.tmp / "src", 10)
        mutate(folder)
    return setup


def stl_bad(env: Env) -> None:
    folder, _ = write_stl(env.tmp / "src")
    with open(folder / "train_X.bin", "ab") as f:
        f.write(b"xyz")


def aves_missing_image(env: Env) -> None:
    folder = write_semi_aves(env.tmp / "src")
    next((folder / "u_train_in").glob("*.jpg")).unlink()


SRC = lambda sub: lambda e: str(e.tmp / "src" / sub)  # noqa: E731
OUT = lambda e: str(e.tmp / "prepared")  # noqa: E731
SEARCH = lambda e: str(e.tmp / "search.yaml")  # noqa: E731
RUN = lambda e: str(e.tmp / "runs" / "t")  # noqa: E731

CASES = {
    # --- train: config keys and values ---
    "unknown-key": Case("train", train("optim.lrr=0.1"), ("optim.lrr", "optim.lr"), ("run",), copy_data),
    "wrong-type": Case("train", train("optim.lr=fast"), ("optim.lr", "number"), ("run",), copy_data),
    "gamma-below-1": Case("train", train("data.imb_ratio_l=0.5"), ("data.imb_ratio_l", "1"), ("run",),
                          copy_data),
    "n1-larger-than-pool": Case("train", train("data.n_max_l=100000"), ("data.n_max_l", "lower"),
                                ("run",), copy_data),
    "class-with-zero-labels": Case("train", train("data.n_max_l=1", "data.imb_ratio_l=100"),
                                   ("data.imb_ratio_l", "0 labeled"), ("run",), copy_data),
    "num-classes-mismatch": Case("train", train("model.num_classes=5"), ("model.num_classes", "10"),
                                 ("run",), copy_data),
    "missing-data-root": Case("train", [*TRAIN, "--out", lambda e: str(e.tmp / "run"), "--set",
                                        lambda e: f"data.root={e.tmp / 'nowhere'}"],
                              ("manifest.json", "daso_ray.prepare"), ("run",)),
    "missing-config": Case("train", ["nope.yaml"], ("nope.yaml",)),
    "yaml-syntax": Case("train", [lambda e: str(e.tmp / "bad.yaml")], ("bad.yaml", "YAML"),
                        setup=lambda e: (e.tmp / "bad.yaml").write_text("data: [\n  x: 1\n")),
    "resume-missing": Case("train", [*TRAIN, "--resume", lambda e: str(e.tmp / "gone")],
                           ("config.yaml", "--resume")),
    "workers-zero": Case("train", [*train(), "--workers", "0"], ("--workers",), ("run",), copy_data),
    "nan-loss": Case("train", train("optim.lr=1e30"), ("non-finite loss", "optim.lr"),
                     ("run/checkpoints/step_00000010", "run/results.json"), copy_data),
    # --- train: data files ---
    "truncated-beton": Case("train", train("data.loader=ffcv"), ("train.beton", "prepare"), ("run",),
                            corrupt("train.beton", ffcv=True, truncate=True)),
    "manifest-checksum": Case("train", train(), ("train.arrow", "checksum"), ("run",),
                              corrupt("train.arrow")),
    "corrupt-checkpoint": Case("train", ["--resume", lambda e: str(e.tmp / "run")], ("state.pt",),
                               setup=bad_checkpoint),
    # --- prepare: sources ---
    "missing-source-file": Case("prepare", ["cifar10", "--src", SRC("cifar-10-batches-py"), "--out",
                                            OUT, "--no-ffcv"], ("data_batch_2",), ("prepared",),
                                cifar(lambda f: (f / "data_batch_2").unlink())),
    "truncated-pickle": Case("prepare", ["cifar10", "--src", SRC("cifar-10-batches-py"), "--out", OUT,
                                         "--no-ffcv"], ("test_batch",), ("prepared",),
                             cifar(lambda f: (f / "test_batch").write_bytes(
                                 (f / "test_batch").read_bytes()[:500]))),
    "stl-bad-size": Case("prepare", ["stl10", "--src", SRC("stl10_binary"), "--out", OUT, "--no-ffcv"],
                         ("train_X.bin",), ("prepared",), stl_bad),
    "aves-missing-image": Case("prepare", ["semi_aves", "--src", SRC("semi_aves"), "--out", OUT,
                                           "--no-ffcv"], ("u_train_in",), ("prepared",),
                               aves_missing_image),
    "prepare-no-src": Case("prepare", ["cifar10", "--out", OUT], ("--src",), ("prepared",)),
    # --- search: the search file (all before Ray starts) ---
    "search-unknown-key": Case("search", [SEARCH], ("budgett",), ("runs",),
                               search_file(budgett={"num_samples": 2})),
    "search-no-scenarios": Case("search", [SEARCH], ("scenarios",), ("runs",),
                                search_file(scenarios=[])),
    "search-inverted-range": Case("search", [SEARCH], ("params.optim.lr.low", "inverted"), ("runs",),
                                  search_file(params_extra={"optim.lr": {"type": "float", "low": 0.3,
                                                                         "high": 0.01}})),
    "search-gamma-u-below-1": Case("search", [SEARCH], ("gamma_u",), ("runs",), search_file(
        scenarios=[{"name": "r", "unlabeled": "reversed", "n1": 20, "m1": 60, "gamma_l": 5,
                    "gamma_u": 0.2}])),
    "search-missing-file": Case("search", [lambda e: str(e.tmp / "none.yaml")], ("none.yaml",)),
    "search-resume-nothing": Case("search", [SEARCH, "--resume"], ("--resume",), ("runs",),
                                  search_file()),
    "search-bad-storage": Case("search", [SEARCH, "--storage", "ftp://host/x"], ("storage",), ("runs",),
                               search_file()),
    # --- export / report ---
    "export-no-finished-trial": Case("export", [RUN, "--out", lambda e: str(e.tmp / "best")],
                                     ("no finished trial", "--resume"), ("best",), empty_search_run),
    "export-missing-run": Case("export", [lambda e: str(e.tmp / "nope"), "--out",
                                          lambda e: str(e.tmp / "best")], ("nope",), ("best",)),
    "export-top-k-zero": Case("export", [RUN, "--out", lambda e: str(e.tmp / "best"), "--top-k", "0"],
                              ("--top-k",), ("best",), empty_search_run),
    "report-missing-run": Case("report", [lambda e: str(e.tmp / "nope")], ("nope",), ("nope",)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, digits_root, capsys, monkeypatch):
    case = CASES[name]
    env = Env(tmp_path, digits_root)
    monkeypatch.chdir(REPO)
    if case.setup is not None:
        case.setup(env)
    capsys.readouterr()
    code = importlib.import_module(f"daso_ray.{case.cli}").main(resolve(case.argv, env))
    err = capsys.readouterr().err.strip()
    assert code != 0, f"{name}: exit 0"
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, f"{name}: expected one error line, got:\n{err}"
    assert "Traceback" not in err
    for s in case.names:
        assert s in lines[0], f"{name}: {s!r} not in {lines[0]!r}"
    for rel in case.absent:
        assert not (tmp_path / rel).exists(), f"{name}: {rel} was written"
    assert not list(tmp_path.rglob("*.tmp")), f"{name}: a temporary file was left behind"


def test_catalogue_is_large():
    assert len(CASES) >= 20
    assert len({c.cli for c in CASES.values()}) >= 5
