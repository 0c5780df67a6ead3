"""Report pieces that need no Ray: parameter importance, chart axes, and bad input."""

from __future__ import annotations

import random
import subprocess
import sys

from daso_ray import svg
from daso_ray.report import importance

PARAMS = {"algorithm.daso.t_proto": {"type": "float", "low": 0.05, "high": 1.0, "log": True},
          "algorithm.daso.lambda_align": {"type": "float", "low": 0.1, "high": 2.0},
          "algorithm.daso.queue_length": {"type": "choice", "values": [16, 64, 256]}}


def _trials(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = {"algorithm.daso.t_proto": rng.uniform(0.05, 1.0),
             "algorithm.daso.lambda_align": rng.uniform(0.1, 2.0),
             "algorithm.daso.queue_length": rng.choice([16, 64, 256])}
        value = 60 + 30 * p["algorithm.daso.t_proto"] + rng.gauss(0, 0.1)  # only t_proto matters
        out.append({"trial_id": f"t{i}", "params": p, "last": {"objective": value}})
    return out


def test_importance_finds_the_parameter_that_drives_the_objective():
    imp = importance(_trials(30), PARAMS, "max")
    assert set(imp) == set(PARAMS)
    assert max(imp, key=imp.get) == "algorithm.daso.t_proto"
    assert imp["algorithm.daso.t_proto"] > 0.8


def test_importance_needs_three_finite_trials():
    trials = _trials(3)
    trials[0]["last"]["objective"] = float("nan")
    assert importance(trials, PARAMS, "max") == {}


def test_ticks_cover_the_range_with_round_steps():
    ticks = svg._ticks(37.2, 81.9)
    assert ticks[0] >= 37.2 and ticks[-1] <= 81.9 and len(ticks) >= 3
    steps = {round(b - a, 6) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1 and steps.pop() in (5.0, 10.0, 20.0, 25.0)


def test_charts_draw_every_series():
    line = svg.line_chart([{"label": "a", "points": [(0, 1.0), (10, 2.0)]},
                           {"label": "b", "points": [(0, 2.0), (5, float("nan"))], "dashed": True}],
                          "t", "x", "y")
    assert line.count("<polyline") == 2 and 'stroke-dasharray="5,4"' in line
    bars = svg.bar_chart(["c0", "c1", "c2"], [{"label": "w", "values": [90.0, 50.0, 10.0]}], "r", "%")
    assert bars.count("<rect") == 1 + 3  # background + one bar per class
    assert "no data yet" in svg.line_chart([], "t", "x", "y")


def test_report_of_a_missing_run_dir_fails_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "daso_ray.report", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert res.stderr.strip().count("\n") == 0 and "no such run directory" in res.stderr
    (tmp_path / "empty").mkdir()
    res = subprocess.run([sys.executable, "-m", "daso_ray.report", str(tmp_path / "empty")],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "search.json" in res.stderr
    assert not (tmp_path / "empty" / "report.html").exists()
