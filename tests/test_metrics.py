"""The metric contract: the median metric is named after its window (issue: top1_median20 was the
median of run.median_last evaluations whatever the window)."""

from __future__ import annotations

import json
import statistics

from daso_ray.metrics import PAPER_MEDIAN, medians, window_problem
from tests.engine_helpers import tiny_config, train


def test_median_names_follow_the_window():
    history = [{"eval/top1": v, "valid/top1": v + 1} for v in (10.0, 40.0, 20.0, 30.0, 50.0)]
    three = medians(history, 3)
    assert three == {"eval/top1_median": 30.0, "valid/top1_median": 31.0}
    paper = medians(history * 4, 20)  # the paper's window: its name is logged too, same value
    assert paper["eval/top1_median20"] == paper["eval/top1_median"] == 30.0
    assert medians([], 20) == {}
    assert "eval/top1_median20" not in medians(history, 20)  # 5 evaluations: not the paper's Med20
    assert window_problem(f"eval/{PAPER_MEDIAN}", 20) is None
    assert "use 'eval/top1_median'" in window_problem(f"eval/{PAPER_MEDIAN}", 5)
    assert window_problem("valid/top1_median", 5) is None


def test_run_logs_the_median_of_its_own_window(digits_root, tmp_path):
    cfg = tiny_config(digits_root, "fixmatch", tmp_path, run={"iterations": 10, "eval_period": 2})
    trainer = train(cfg, tmp_path / "run")
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    tops = [h["eval/top1"] for h in res["history"]]
    assert len(tops) == 5 and res["median_window"] == 3
    assert res["eval/top1_median"] == statistics.median(tops[-3:])
    assert "eval/top1_median20" not in res and "eval/top1_median20" not in trainer.last_metrics
    assert res["valid/top1_median"] == statistics.median([h["valid/top1"] for h in res["history"]][-3:])
