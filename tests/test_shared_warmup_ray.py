"""Issue 16 on a real local Ray cluster: a search whose trials fork from shared warm-ups gives
every trial the very record (objective curve, metric lines) the same search gives without
sharing, and --resume reuses the finished warm-ups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daso_ray.study.leaderboard import leaderboard
from tests.search_helpers import REPO, search_dict, write_base, write_search

P = 20  # the base config's pretrain_iters (tests/search_helpers.write_base)


def _search(tmp_path: Path, share: bool, *extra: str) -> tuple[Path, str]:
    spec = search_dict(tmp_path / ("shared" if share else "scratch"), params={
        "algorithm.daso.t_proto": {"type": "float", "low": 0.02, "high": 1.0, "log": True},
        "algorithm.daso.queue_length": {"type": "int", "low": 2, "high": 16},
        "algorithm.daso.dist_update_period": {"type": "choice", "values": [5, 10, 20]}},
        set={"algorithm.daso.queue_length": 8},
        budget={"num_samples": 3, "max_concurrent": 2, "iterations": 40, "seeds": 2,
                "share_warmup": share})
    file = write_search(tmp_path, spec)
    env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_THREADING_LAYER": "tbb"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "daso_ray.search", str(file), "--num-cpus", "2",
                           *extra], capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Path(spec["storage"]) / "t", proc.stdout + proc.stderr


def _record(run_dir: Path) -> dict:
    """{params: (objective curve, each run's metric lines without wall-clock throughput)}."""
    out = {}
    for t in leaderboard(run_dir)["consistent"]["finished"]:
        runs = Path(t["dir"]) / "runs"  # the trial's own runs, one folder per (scenario, seed)
        lines = {p.parent.name: [{k: v for k, v in json.loads(ln).items() if k != "perf/img_per_s"}
                                 for ln in p.read_text().splitlines()]
                 for p in sorted(runs.glob("*/metrics.jsonl"))}
        out[json.dumps(t["params"], sort_keys=True)] = (t["curve"], lines)
    return out


@pytest.mark.ray
@pytest.mark.slow
def test_search_with_shared_warmups_equals_the_search_without(tmp_path, digits_root):
    write_base(tmp_path, digits_root)
    shared, log = _search(tmp_path, share=True)
    warm = shared / "consistent" / "warmup"
    assert "2 shared warm-up(s) to iteration 20 ready" in log and "trains from step 0" not in log
    assert sorted(p.name for p in warm.iterdir()) == ["consistent__seed0", "consistent__seed1"]
    scratch, log_b = _search(tmp_path, share=False)
    assert "no shared warm-up: budget.share_warmup is false" in log_b
    a, b = _record(shared), _record(scratch)
    assert len(a) == 3 and a.keys() == b.keys()
    for params in a:
        assert a[params][0] == b[params][0], params  # every reported step's objective
        assert len(a[params][1]) == 2 and a[params][1] == b[params][1], params
    # The first evaluations of every trial are the warm-up's own lines.
    warm_lines = (warm / "consistent__seed0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in warm_lines] == [10, 20]
    stamp = (warm / "consistent__seed0" / "warmup.json").stat().st_mtime_ns
    _, again = _search(tmp_path, True, "--resume")
    assert (warm / "consistent__seed0" / "warmup.json").stat().st_mtime_ns == stamp  # reused
    assert "ready" in again
