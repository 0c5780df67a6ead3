"""What a run keeps in its directory: checkpoints, ``metrics.jsonl`` (one line per evaluation,
appended) and ``results.json`` (the final record). With data-parallel ranks only rank 0 writes.

A resumed run drops the metric lines logged after its checkpoint, since it logs them again, so its
``metrics.jsonl`` matches an uninterrupted run's line for line.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from daso_ray.config import Config, to_dict
from daso_ray.data.longtail import Split
from daso_ray.engine import checkpoint
from daso_ray.engine.step import NonFiniteLoss
from daso_ray.files import atomic_write_text
from daso_ray.metrics import PAPER_MEDIAN, TEST_MEDIAN, TEST_TOP1, VALID_MEDIAN

# Copied from the final metrics to results.json's top level, where readers look first.
HEADLINE = (TEST_MEDIAN, VALID_MEDIAN, f"eval/{PAPER_MEDIAN}", TEST_TOP1)


class RunFiles:
    """The files of the run in ``run_dir``; ``main``: this rank writes them."""

    def __init__(self, run_dir: Path, main: bool):
        self.run_dir, self.main = Path(run_dir), main
        self.metrics = self.run_dir / "metrics.jsonl"

    def open(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def save_checkpoint(self, step: int, state: dict) -> str | None:
        """Rank 0 saves ``state`` (which every rank built together); the others get None."""
        return str(checkpoint.save(self.run_dir, step, state)) if self.main else None

    def log(self, metrics: dict) -> None:
        """Append one evaluation's metrics line."""
        if self.main:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(metrics) + "\n")

    def lines(self) -> list[dict]:
        """Every metrics line logged so far, oldest first ([] before the first)."""
        if not self.metrics.is_file():
            return []
        return [json.loads(ln) for ln in self.metrics.read_text().splitlines() if ln]

    def logged_at(self, step: int) -> dict:
        """The metrics line logged at ``step`` ({} if none)."""
        return next((m for m in reversed(self.lines()) if m["step"] == step), {})

    def forget_after(self, step: int) -> None:
        """Drop the metric lines logged after ``step``, the checkpoint a run resumes from."""
        if not self.metrics.is_file():
            return
        keep = [ln for ln in self.metrics.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        atomic_write_text(self.metrics, "".join(ln + "\n" for ln in keep))

    def write_results(self, res: dict) -> None:
        if self.main:
            atomic_write_text(self.run_dir / "results.json", json.dumps(res, indent=1))

    @contextlib.contextmanager
    def keeping_last_checkpoint(self):
        """Say which checkpoint survives a non-finite loss, and how to go on."""
        try:
            yield
        except NonFiniteLoss as err:
            last = checkpoint.latest(self.run_dir)
            # Offer --resume only where there is a checkpoint to continue from.
            keep = (f"the last good checkpoint {last} is kept; --resume {self.run_dir} continues "
                    "from it" if last else "no checkpoint was written yet")
            raise NonFiniteLoss(f"{err}; {keep} — lower optim.lr or check the data, then "
                                "rerun") from None


def results(final: dict, step: int, summary: dict, split: Split, history: list[dict],
            cfg: Config) -> dict:
    """results.json's content: the final metrics, the algorithm's summary, the split, the history
    of evaluations, the config and the median window, then the headline metrics."""
    res = {"iterations": step, "final": final, **summary, "split": str(split.path),
           "labeled_counts": split.counts, "history": history, "config": to_dict(cfg)}
    res["median_window"] = cfg.run.median_last
    for key in HEADLINE:
        if key in final:
            res[key] = final[key]
    return res
