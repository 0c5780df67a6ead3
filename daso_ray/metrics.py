"""The metric contract: every name a run logs, Tune receives, a search ranks on, verify compares
and a report shows is built here, so no other module spells a metric name.

A run's metrics are ``<split>/<name>``: ``eval/*`` on the test set (reported, never searched on
by the shipped search spaces), ``valid/*`` on the validation hold-out carved from the labeled
training set, ``train/*`` (losses, mask ratio), ``pl/*`` (pseudo-label quality), ``perf/*``.

The median metric: the DASO paper (Oh et al., CVPR 2022, Sec. 4.1, following FixMatch's protocol)
reports the median of the last 20 evaluations ("Med20"). A run's window is ``run.median_last``, so
the metric is named after what it is: ``top1_median`` is the median of the last
``run.median_last`` evaluations (the window is recorded as ``median_window`` in results.json), and
the paper's name ``top1_median20`` is logged too, only when the window is the paper's 20.
Imports nothing from the package: everything may import it.
"""

from __future__ import annotations

import statistics

SPLITS = ("eval", "valid")  # test set, validation hold-out
GROUPS = ("head", "medium", "tail")  # thirds of the classes by labeled frequency, head first
MEDIAN = "top1_median"
PAPER_WINDOW = 20
PAPER_MEDIAN = f"top1_median{PAPER_WINDOW}"
SCALARS = ("top1", MEDIAN, PAPER_MEDIAN, "balanced_acc", "gmean_recall",
           *(f"{g}_acc" for g in GROUPS))

TEST_TOP1 = "eval/top1"
TEST_MEDIAN = f"eval/{MEDIAN}"  # what verify compares and reports show: never searched on
VALID_MEDIAN = f"valid/{MEDIAN}"  # the default search objective

# Scalars forwarded to Tune per scenario, hence the possible objectives (the rest of the metrics
# stays in each run's metrics.jsonl).
TUNE_KEYS = tuple(f"{split}/{m}" for split in SPLITS for m in SCALARS)
THROUGHPUT = "perf/img_per_s"  # training images per second over an evaluation window
TOP1_LA = "top1_la"  # post-hoc logit-adjusted top-1 (argmax z - log pi_l), per split
LABELED_COUNTS = "data/labeled_counts"  # N_k: orders per-class recall head -> tail in reports
TUNE_KEYS += ("train/loss", "train/mask_ratio", THROUGHPUT)
# Lists reported beside the scalars (per-class recall is averaged over seeds; counts are equal).
RECALL_KEYS = ("eval/per_class_recall", "valid/per_class_recall", LABELED_COUNTS)
# The test confusion matrix (rows: true class, columns: predicted), at a run's last evaluation.
CONFUSION_KEY = "eval/confusion"
# Per-evaluation scalars a run keeps in its history (the medians are taken over these).
HISTORY_KEYS = (TEST_TOP1, "valid/top1", "eval/balanced_acc", f"eval/{TOP1_LA}")
# What `train` prints and `train --seeds` summarises (mean ± std over seeds).
SUMMARY_KEYS = (TEST_MEDIAN, VALID_MEDIAN, TEST_TOP1, "eval/balanced_acc", "eval/gmean_recall",
                *(f"eval/{g}_acc" for g in GROUPS))


def median_last(values: list[float], n: int) -> float:
    """Median of the last ``n`` values (NaN when there are none); the paper's Med20 is n = 20."""
    return float(statistics.median(values[-n:])) if values else float("nan")


def medians(history: list[dict], window: int) -> dict[str, float]:
    """``<split>/top1_median`` (and ``<split>/top1_median20`` when ``window`` is 20 and 20 values
    exist: a median of fewer is not the paper's Med20) over the
    ``<split>/top1`` values in ``history`` (one dict per evaluation, oldest first)."""
    out = {}
    for split in SPLITS:
        values = [h[f"{split}/top1"] for h in history if f"{split}/top1" in h]
        if values:
            out[f"{split}/{MEDIAN}"] = median_last(values, window)
            if window == PAPER_WINDOW and len(values) >= PAPER_WINDOW:  # else not the paper's
                out[f"{split}/{PAPER_MEDIAN}"] = out[f"{split}/{MEDIAN}"]
    return out


def window_problem(metric: str, window: int) -> str | None:
    """Why ``metric`` is never logged by a run whose median window is ``window`` (None if it is)."""
    if metric.endswith(f"/{PAPER_MEDIAN}") and window != PAPER_WINDOW:
        split = metric.split("/", 1)[0]
        return (f"'{metric}' is the paper's median of the last {PAPER_WINDOW} evaluations, but "
                f"run.median_last is {window} — use '{split}/{MEDIAN}' (the median of the last "
                f"run.median_last evaluations) or set run.median_last: {PAPER_WINDOW}")
    return None
