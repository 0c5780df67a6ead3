"""The Tune-side pieces of the search, without a cluster: ASHA never stops the baseline."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.tune")

from ray.tune.experiment import Trial  # noqa: E402
from ray.tune.schedulers import TrialScheduler  # noqa: E402

from daso_ray.ray_jobs.searcher import BaselineASHA  # noqa: E402

BASE = {"algorithm.daso.t_proto": 0.05, "algorithm.daso.queue_length": 64}


def _decisions(scheduler, trials, value_of) -> dict[str, str]:
    """Feed each trial one result at the first rung (step 10), in order; the decisions."""
    for t in trials:
        scheduler.on_trial_add(None, t)
    return {t.trial_id: scheduler.on_trial_result(None, t, {"step": 10, "objective": value_of[t.trial_id]})
            for t in trials}


def test_asha_records_but_never_stops_the_baseline():
    cls = BaselineASHA
    make = lambda tid, cfg: Trial("f", config=cfg, trial_id=tid, stub=True)  # noqa: E731
    good = [make(f"g{i}", {**BASE, "algorithm.daso.t_proto": 0.1 * (i + 1)}) for i in range(4)]
    base = make("base", dict(BASE))
    values = {**{t.trial_id: 80.0 + i for i, t in enumerate(good)}, "base": 10.0}
    sched = cls(time_attr="step", metric="objective", mode="max", max_t=40, grace_period=10,
                reduction_factor=2, baseline=BASE)
    got = _decisions(sched, [*good, base], values)
    assert got["base"] == TrialScheduler.CONTINUE  # worst at the rung, still continues
    # The same trial under plain ASHA is stopped: the exemption is what keeps it.
    plain = cls(time_attr="step", metric="objective", mode="max", max_t=40, grace_period=10,
                reduction_factor=2, baseline={"other": 1})
    assert _decisions(plain, [*good, base], values)["base"] == TrialScheduler.STOP
    # A non-baseline trial as bad as the baseline is stopped by the same scheduler.
    worse = make("worse", {**BASE, "algorithm.daso.t_proto": 0.9})
    assert _decisions(sched, [worse], {"worse": 5.0})["worse"] == TrialScheduler.STOP


def test_a_restored_study_refills_asha_rungs_from_its_recorded_results(tmp_path):
    """Tune does not save a scheduler's rungs: after --resume, BaselineASHA refills them from
    each trial's result.json, so a resumed trial meets the cutoff an uninterrupted study set."""
    import json

    study = tmp_path / "consistent"
    for tid, curve in {"a": [(10, 80.0), (20, 85.0)], "b": [(10, 70.0)], "c": [(10, 60.0)]}.items():
        (study / f"trial_{tid}").mkdir(parents=True)
        rows = [{"step": s, "objective": v, "trial_id": tid} for s, v in curve]
        (study / f"trial_{tid}" / "result.json").write_text("\n".join(map(json.dumps, rows)))
    make = lambda tid: Trial("f", config={"x": tid}, trial_id=tid, stub=True)  # noqa: E731
    kw = dict(time_attr="step", metric="objective", mode="max", max_t=40, grace_period=10,
              reduction_factor=2, baseline=BASE)
    restored = BaselineASHA(**kw, study_dir=str(study))
    empty = BaselineASHA(**kw)  # what a restored study had before: no recorded values
    # A new trial reporting 65 at the first rung: below the recorded median (70), so stopped;
    # with empty rungs it would have been let through.
    assert _decisions(restored, [make("d")], {"d": 65.0})["d"] == TrialScheduler.STOP
    assert _decisions(empty, [make("d")], {"d": 65.0})["d"] == TrialScheduler.CONTINUE
    # A resumed trial reaching the next rung meets the value recorded there before the stop.
    restored.on_trial_add(None, make("b"))
    assert restored.on_trial_result(None, make("b"), {"step": 20, "objective": 75.0}) == \
        TrialScheduler.STOP  # below "a"'s 85 at step 20
    empty.on_trial_add(None, make("b"))
    assert empty.on_trial_result(None, make("b"), {"step": 20, "objective": 75.0}) == \
        TrialScheduler.CONTINUE
