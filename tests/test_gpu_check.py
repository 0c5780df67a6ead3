"""benchmarks/gpu_check.sh cannot rot: its CPU dry run goes through every stage, and the table
reports what a GPU run would (a failed or timed-out stage, the P8 estimate from the whole loop)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import run

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cpu_dry_run_covers_every_stage(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert res["failed"] == [] and set(res["stages"]) == set(run.STAGES)
    stages = {r["stage"] for r in res["rows"] if r["metric"] != "stage"}
    assert {"gpu_tests", "step_eager", "loop", "pack", "step_compiled", "step_cudagraphs", "P8"} <= stages
    p8 = next(r for r in res["rows"] if r["stage"] == "P8" and r["metric"].startswith("250k"))
    assert isinstance(p8["value"], float) and p8["value"] > 0
    assert "stage" in proc.stdout and (tmp_path / "out" / "gpu_check.log").is_file()


def test_table_reports_failures_and_p8_from_the_loop(tmp_path):
    d = tmp_path / "stages"
    d.mkdir()
    (d / "prepare.status").write_text(json.dumps({"rc": 0, "seconds": 3, "limit": 60}))
    (d / "step_compiled.status").write_text(json.dumps({"rc": 124, "seconds": 120, "limit": 120}))
    (d / "step_eager.json").write_text(json.dumps({"rows": [
        {"algorithm": "fixmatch", "device": "cuda", "mode": "eager", "status": "failed",
         "reason": "RuntimeError: boom"}]}))
    (d / "loop.json").write_text(json.dumps({"loaders": {"torch": {
        "it_per_s": 100.0, "eval_s": 2.0, "eval_images": 1000}}}))
    res = run.gather(tmp_path, "cuda")
    assert res["stages"]["step_compiled"]["status"] == "timed out after 120 s"
    assert res["stages"]["loop"]["status"] == "not run" and "loop" in res["failed"]
    assert "prepare" not in res["failed"]
    p8 = next(r for r in res["rows"] if r["stage"] == "P8" and r["metric"].startswith("250k"))
    # 250k / 100 it/s = 0.694 h training; 500 x 2 s x 15k / 1k images = 4.17 h evaluating
    assert p8["value"] == pytest.approx(250_000 / 100 / 3600 + 500 * 2.0 * 15 / 3600)
    assert p8["met"] is False
    table = run.gpu_table(res["rows"])
    assert "RuntimeError: boom" in table and "timed out after 120 s" in table
