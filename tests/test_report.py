"""Report pieces that need no Ray: the verdict, leaderboard, slice plots, class names, confusion
heatmaps and learning-curve marks on a fabricated run directory; parameter importance, chart axes,
bad input; and the loop's ``eval/confusion`` at the last evaluation (a tiny CPU run)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import pytest

from daso_ray import svg
from daso_ray.report import importance, render, verdict_of
from tests.report_helpers import ANIMALS, make_run, verify_doc
from tests.report_helpers import PARAMS as SPACE

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


def _section(html: str, title: str) -> str:
    """The HTML between ``<h2>title`` and the next ``<h2>``."""
    start = html.index(f"<h2>{title}")
    end = html.find("<h2>", start + 4)
    return html[start:end if end > 0 else len(html)]


def _svgs(html: str, title_part: str) -> list[str]:
    return [s for s in re.findall(r"<svg.*?</svg>", html) if title_part in s]


@pytest.mark.parametrize(("ci", "verdict", "shown"), [
    ([0.5, 2.3], "adopt", "[+0.500, +2.30]"), ([-2.0, -0.1], "keep_baseline", "[-2.00, -0.100]"),
    ([-0.4, 3.2], "inconclusive", "[-0.400, +3.20]")])
def test_report_opens_with_the_verdict_of_verify_json(tmp_path, ci, verdict, shown):
    html = render(make_run(tmp_path, verify=verify_doc(ci, verdict)))
    assert html.index("<h2>Verdict") < html.index("<h2>Leaderboard")  # the verdict comes first
    top = _section(html, "Verdict")
    assert f'class="{verdict}"><b>{verdict}</b>' in top and "interval says" not in top
    assert verdict_of(ci) == verdict
    assert f"<td>{shown}</td>" in top
    assert "+1.42" in top and "0.440" in top and "not verified" not in top
    for b, w in [("70.00", "71.25"), ("70.50", "72.50"), ("69.00", "70.00")]:  # per seed
        assert re.search(rf"<td>10[012]</td><td>{b}</td><td>{w}</td>", top)
    assert "lower bound is above 0" in top and "upper bound is below 0" in top  # the rule


def test_a_verdict_that_contradicts_its_interval_is_flagged(tmp_path):
    top = _section(render(make_run(tmp_path, verify=verify_doc([-1.0, -0.2], "adopt"))), "Verdict")
    assert "<b>adopt</b> (interval says keep_baseline)" in top


def test_a_study_verify_could_not_compare_renders_without_values(tmp_path):
    doc = {"smoke": True, "studies": {"consistent": {
        "seeds": [100], "winner": None, "baseline": {"params": {}}, "verdict": "inconclusive",
        "note": "no finished trial in this study: nothing to verify"}}}
    top = _section(render(make_run(tmp_path, verify=doc)), "Verdict")
    assert "<b>inconclusive</b>" in top and "nothing to verify" in top
    assert "--smoke" in top and "per seed" not in top


def test_report_without_verify_json_says_not_verified(tmp_path):
    run = make_run(tmp_path)
    top = _section(render(run), "Verdict")
    assert "not verified" in top and f"python -m daso_ray.verify {run}" in top
    (run / "verify.json").write_text("{not json")
    assert "not verified" in _section(render(run), "Verdict")


def test_leaderboard_shows_standard_errors_and_marks_the_baseline(tmp_path):
    board = _section(render(make_run(tmp_path, n_done=12)), "Leaderboard")
    assert "objective ± s.e." in board and "115.00 ± 0.400" in board  # the best: trial11
    assert board.count("baseline</td>") == 1  # trial0 ranks 12th of 12: listed anyway
    assert '<td class="l base"><b>trial0</b> baseline</td>' in board


def test_per_class_values_are_labelled_with_the_manifests_class_names(tmp_path):
    html = render(make_run(tmp_path, k=6, names=ANIMALS))
    assert "winner trial3 albatross: 90" in html and "winner trial3 ferret: 40" in html
    assert "true albatross, predicted bison: 0" in html and "winner trial3 c0:" not in html
    (tmp_path / "data" / "manifest.json").unlink()  # data not on this machine: c0..
    assert "winner trial3 c0: 90" in render(tmp_path / "run")


def test_index_only_class_names_stay_c_numbered(tmp_path):
    html = render(make_run(tmp_path, k=3, names=["0", "1", "2"]))
    assert "winner trial3 c2: 70" in html


def test_winner_confusion_is_a_k_by_k_row_normalised_heatmap(tmp_path):
    html = render(make_run(tmp_path, k=6, names=ANIMALS))
    (fig,) = _svgs(_section(html, "Confusion"), "test confusion")
    assert fig.count('class="cell"') == 6 * 6
    # Row r of the fabricated matrix: 10 right, r to each other class (bison: 10 of 15).
    assert "true bison, predicted bison: 10 (66.7% of the row)" in fig
    assert "true cheetah, predicted albatross: 2 (10.0% of the row)" in fig


def test_confusion_of_many_classes_is_not_drawn(tmp_path):
    section = _section(render(make_run(tmp_path, k=51)), "Confusion")
    assert 'class="cell"' not in section and "51 classes — not drawn" in section


def test_one_slice_plot_per_parameter_with_finished_and_stopped_markers(tmp_path):
    section = _section(render(make_run(tmp_path)), "Slice plots")
    figs = _svgs(section, "objective vs")
    assert len(figs) == len(SPACE)  # one study
    for fig, name in zip(figs, SPACE, strict=True):
        assert f"objective vs {name.split('.')[-1]}" in fig
        assert fig.count('<circle class="pt filled"') == 3  # finished trials
        assert fig.count('<circle class="pt hollow"') == 3  # ASHA-stopped trials
        assert fig.count('<polygon class="pt filled"') == 1  # the (finished) baseline's diamond
        assert ">finished<" in fig and ">stopped (ASHA)<" in fig and ">baseline<" in fig
        assert ("(log scale)" in fig) == SPACE[name].get("log", False)


def test_learning_curves_mark_where_asha_stopped_a_trial(tmp_path):
    (fig,) = _svgs(_section(render(make_run(tmp_path, n_stopped=3)), "Learning curves"),
                   "best trials")
    assert fig.count('class="stop"') == 3 and "trial6 (stopped): stopped at 50" in fig
    assert ">stopped by ASHA<" in fig


def test_svg_log_axis_and_heatmap_shapes():
    ticks = svg._log_ticks(0.02, 1.0)
    assert ticks == [0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    fig = svg.scatter([{"label": "a", "points": [(0.0, 1.0, "x"), (0.1, 2.0, "y")]}], "t", "x", "y",
                      log_x=True)
    assert fig.count('class="pt filled"') == 1  # x <= 0 has no place on a log axis
    grid = svg.heatmap([[0, 0], [3, 1]], ["a", "b"], "t")
    assert grid.count('class="cell"') == 4 and "#eee" in grid  # an empty row stays grey


def test_loop_logs_the_test_confusion_at_the_last_evaluation_only(digits_root, tmp_path):
    from daso_ray.study.objective import Objective, aggregate
    from tests.engine_helpers import tiny_config, train

    tr = train(tiny_config(digits_root, "fixmatch", tmp_path), tmp_path / "run")
    lines = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [2, 4, 6, 8]
    assert ["eval/confusion" in m for m in lines] == [False, False, False, True]
    conf = lines[-1]["eval/confusion"]
    manifest = json.loads((digits_root / "manifest.json").read_text())
    k = manifest["num_classes"]
    assert len(conf) == k and all(len(r) == k and all(isinstance(n, int) for n in r) for r in conf)
    assert [sum(r) for r in conf] == manifest["splits"]["test"]["class_counts"]
    total = sum(map(sum, conf))
    assert lines[-1]["eval/top1"] == pytest.approx(100 * sum(conf[i][i] for i in range(k)) / total)
    # A Tune trial sums it over seeds into <scenario>/eval/confusion, where the report reads it.
    agg = aggregate(Objective(), {("s", 0): tr.last_metrics, ("s", 1): tr.last_metrics}, 8)
    assert [list(r) for r in agg["s/eval/confusion"]] == [[2 * n for n in r] for r in conf]
