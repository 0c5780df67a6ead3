"""Evaluation data and FFCV threads (issue 14: defects 0 and 2, item 4).

- FFCV must not change the training process's torch thread count (import, Loader, each epoch);
- with W data-parallel ranks every image of an (odd-sized) eval set is scored exactly once and the
  summed confusion equals the one-process confusion, with either loader;
- eval sets are read once per run and the metrics equal a direct computation over the set.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from engine_helpers import tiny_config

HAS_FFCV = importlib.util.find_spec("ffcv") is not None
N_TEST = 101  # odd: two ranks get 51 and 50 images
LOADERS = ["torch", pytest.param("ffcv", marks=[pytest.mark.ffcv, pytest.mark.slow,
                                                pytest.mark.skipif(not HAS_FFCV, reason="no ffcv")])]


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory):
    """Prepared digits with a 101-image test set (.arrow, and .beton where FFCV is installed)."""
    from daso_ray.data.catalog import load_source
    from daso_ray.data.ffcv_io import prepare_source
    from daso_ray.data.sources import SourceSplit

    src = load_source("digits", None)
    test = src.splits["test"]
    src.splits["test"] = SourceSplit(test.labels[:N_TEST], np.ascontiguousarray(test.images[:N_TEST]))
    out = tmp_path_factory.mktemp("odd") / "digits"
    prepare_source(src, out, with_ffcv=HAS_FFCV, workers=1)
    return out


def _cfg(root, out, loader: str):
    return tiny_config(root, "fixmatch", out, data={"loader": loader})


# -- defect 0: FFCV and torch's thread count --------------------------------------------------

_THREADS_SCRIPT = """
import json, sys, torch
torch.set_num_threads(3)  # what this process was given (not the machine's default, on purpose)
assert "ffcv" not in sys.modules
from daso_ray.config import DataConfig
from daso_ray.data.module import TrainData
cfg = DataConfig(**json.loads(sys.argv[1]))
before = torch.get_num_threads()
td = TrainData(cfg, seed=0, device="cpu")
labeled, unlabeled = td.labeled(), td.unlabeled()
for _ in range(len(td.split.labeled) // cfg.batch_size + 2):  # crosses an epoch boundary
    next(labeled)
next(unlabeled)
sum(len(b["y"]) for b in td.eval_batches("test"))
print(json.dumps({"before": before, "after": torch.get_num_threads()}))
"""


@pytest.mark.ffcv
@pytest.mark.slow
@pytest.mark.skipif(not HAS_FFCV, reason="no ffcv")
def test_ffcv_keeps_the_torch_thread_count(odd_root):
    # A fresh interpreter: FFCV lowers the count at import, which an in-process test cannot see
    # once any other test has imported ffcv.
    data = {"dataset": "digits", "root": str(odd_root), "loader": "ffcv", "n_max_l": 20,
            "n_max_u": 60, "imb_ratio_l": 5, "imb_ratio_u": 5, "num_valid": 50, "batch_size": 16,
            "mu": 1, "num_workers": 1}
    done = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, json.dumps(data)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"before": 3, "after": 3}


# -- defect 2: every image scored once across ranks -------------------------------------------


def _spy_confusion(calls: list):
    """Wrap the loop's ``confusion`` to record, per call, the indices scored and the local
    (per-rank, before the sum over ranks) confusion matrices."""
    import daso_ray.engine.loop as loop

    original = loop.confusion

    def spy(predict, batches, k, log_prior=None):
        batches = list(batches)
        conf, conf_la = original(predict, batches, k, log_prior)
        idx = [b["idx"] for b in batches]
        calls.append({"idx": torch.cat(idx) if idx else torch.zeros(0, dtype=torch.long),
                      "conf": conf, "conf_la": conf_la})
        return conf, conf_la

    loop.confusion = spy
    return original


def _evaluate(cfg, run_dir, dist=None) -> tuple[list, dict]:
    """(per-set local records [test, valid], metrics) of one ``Trainer.evaluate`` at init."""
    import daso_ray.engine.loop as loop

    calls: list = []
    original = _spy_confusion(calls)
    try:
        trainer = loop.Trainer(cfg, run_dir, **({"dist": dist} if dist else {}))
        metrics = trainer.evaluate()
    finally:
        loop.confusion = original
    return calls, metrics


def _rank(rank: int, init: str, root: str, out: str, loader: str) -> None:
    from daso_ray.dist import Collective

    tdist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    calls, metrics = _evaluate(_cfg(root, out, loader), f"{out}/run{rank}", Collective(rank, 2))
    torch.save({"calls": calls, "metrics": metrics}, f"{out}/{rank}.pt")
    tdist.destroy_process_group()
    # Leave without interpreter finalisation: gloo's worker thread may still be releasing the last
    # all-reduce's tensors, and taking the GIL during finalisation aborts the process (seen as
    # "terminate called without an active exception", SIGABRT; torch 2.14 + gloo).
    os._exit(0)


def _eval_keys(m: dict) -> dict:
    return {k: v for k, v in m.items() if k.startswith(("eval/", "valid/"))}


@pytest.mark.parametrize("loader", LOADERS)
def test_two_ranks_score_every_image_once(odd_root, tmp_path, loader):
    mp.spawn(_rank, args=(f"file://{tmp_path}/init", str(odd_root), str(tmp_path), loader),
             nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{r}.pt", weights_only=False) for r in (0, 1)]
    single_calls, single = _evaluate(_cfg(odd_root, tmp_path, loader), tmp_path / "single")
    valid = single_calls[1]["idx"]
    for s, expect in ((0, torch.arange(N_TEST)), (1, valid)):
        idx = torch.cat([r["calls"][s]["idx"] for r in ranks])
        assert len(idx) == len(expect)  # no padded duplicates, nothing left out
        assert sorted(idx.tolist()) == sorted(expect.tolist())
        for key in ("conf", "conf_la"):
            summed = ranks[0]["calls"][s][key] + ranks[1]["calls"][s][key]
            assert torch.equal(summed, single_calls[s][key])
    assert [len(c["idx"]) for c in ranks[0]["calls"]] == [51, 25]  # rows 0, 2, 4, ...
    assert _eval_keys(ranks[0]["metrics"]) == _eval_keys(ranks[1]["metrics"]) == _eval_keys(single)


# -- item 4: eval sets read once per run, same metrics ----------------------------------------


def _count_eval_reads(monkeypatch) -> list:
    """Record (loader, file) for every eval-set loader built (torch path and FFCV path)."""
    import daso_ray.data.ffcv_ops as ffcv_ops
    import daso_ray.data.torch_streams as module

    built: list = []
    torch_eval = getattr(module, "torch_eval_loader", None)

    def torch_counted(store, *a, **kw):
        built.append(("torch", store.path.name))
        return torch_eval(store, *a, **kw)

    # raising=False: code without this helper then counts 0 reads and fails on the count.
    monkeypatch.setattr(module, "torch_eval_loader", torch_counted, raising=False)
    if HAS_FFCV:
        ffcv_loader = ffcv_ops.ffcv_loader

        def ffcv_counted(path, **kw):
            if kw["kind"] == "test":
                built.append(("ffcv", path.rsplit("/", 1)[-1]))
            return ffcv_loader(path, **kw)

        monkeypatch.setattr(ffcv_ops, "ffcv_loader", ffcv_counted)
    return built


def _direct_metrics(trainer, root, which: str) -> dict:
    """Today's evaluation done by hand: the whole set in file order, 256 at a time, normalised
    with ``augment.normalize``, confusion by ``np.bincount``."""
    from daso_ray.data.augment import normalize
    from daso_ray.data.loaders import STATS
    from daso_ray.data.store import Store
    from daso_ray.engine.evaluate import metrics_from_confusion

    store = Store(root / ("test.arrow" if which == "test" else "train.arrow"))
    order = np.arange(len(store)) if which == "test" else np.asarray(trainer.data.split.valid)
    k, ema = trainer.ctx.num_classes, trainer.nets.ema
    ema.eval()
    pred, pred_la = [], []
    with torch.no_grad():
        for s in range(0, len(order), 256):
            raw = torch.from_numpy(store.pixels(order[s:s + 256])).permute(0, 3, 1, 2)
            logits = trainer.algo.predict(ema, normalize(raw, *STATS["digits"], 16)).float()
            pred.append(logits.argmax(1))
            pred_la.append((logits - trainer.ctx.log_prior).argmax(1))
    y = store.labels[order]
    conf = np.bincount(y * k + torch.cat(pred).numpy(), minlength=k * k).reshape(k, k)
    conf_la = np.bincount(y * k + torch.cat(pred_la).numpy(), minlength=k * k).reshape(k, k)
    prefix = "eval" if which == "test" else "valid"
    out = metrics_from_confusion(conf, trainer.ctx.labeled_counts.tolist(), prefix)
    out[f"{prefix}/top1_la"] = 100.0 * float(np.trace(conf_la)) / max(int(conf_la.sum()), 1)
    return out


@pytest.mark.parametrize("loader", LOADERS)
def test_eval_sets_read_once_per_run_and_metrics_unchanged(odd_root, tmp_path, monkeypatch,
                                                           loader):
    from daso_ray.engine.loop import Trainer

    built = _count_eval_reads(monkeypatch)
    reports: list = []
    trainer = Trainer(_cfg(odd_root, tmp_path, loader), tmp_path / "run",
                      report=lambda m, _c: reports.append(m))
    trainer.fit()
    assert len(reports) == 4  # 8 iterations, eval_period 2
    ext = "beton" if loader == "ffcv" else "arrow"
    assert sorted(built) == [(loader, f"test.{ext}"), (loader, f"train.{ext}")]  # test, valid
    want = {**_direct_metrics(trainer, odd_root, "test"), **_direct_metrics(trainer, odd_root, "valid")}
    assert {k: reports[-1][k] for k in want} == want


# -- CUDA placement (run by benchmarks/gpu_check.sh) ------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_eval_sets_on_device_and_pinned_when_too_big(odd_root):
    from daso_ray.config import DataConfig
    from daso_ray.data.loaders import eval_storage
    from daso_ray.data.module import TrainData

    cfg = DataConfig(dataset="digits", root=str(odd_root), loader="torch", n_max_l=20, n_max_u=60,
                     imb_ratio_l=5, imb_ratio_u=5, num_valid=50, batch_size=8, mu=2, num_workers=1)
    td = TrainData(cfg, seed=0, device="cuda")
    x, y, idx = td.eval_set("test")
    assert x.is_cuda and y.is_cuda and idx.is_cuda and len(y) == N_TEST
    b = next(td.labeled())
    assert all(v.is_cuda for v in b.values())
    big = eval_storage(4, 32, torch.device("cuda"), budget=0)
    assert all(t.device.type == "cpu" and t.is_pinned() for t in big)
