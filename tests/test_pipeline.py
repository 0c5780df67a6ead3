"""pipelines/digits_lt.py end to end in smoke mode (local Ray), then again: every stage skipped."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.search_helpers import REPO

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_digits_pipeline_smoke_runs_every_stage_then_skips_them(tmp_path):
    cmd = [sys.executable, str(REPO / "pipelines" / "digits_lt.py"), "--smoke", "--seeds", "1"]
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    work = tmp_path / "runs" / "pipelines" / "digits_lt" / "smoke"
    configs = sorted(p.stem for p in (work / "best").glob("*.yaml"))
    assert configs == ["digits_lt_smoke__consistent", "digits_lt_smoke__reversed",
                       "digits_lt_smoke__uniform"]
    results = json.loads((work / "results.json").read_text())
    assert set(results) == set(configs)
    assert all(len(r["eval/top1_median"]["values"]) == 1 for r in results.values())
    assert "winners after final training" in (work / "results.md").read_text()

    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("[prepare]", "[search]", "[export]", "[final]"):
        assert f"{stage} " in again.stdout and "skipped" in again.stdout
    assert "Connecting" not in again.stderr and "Started a local Ray" not in again.stderr
