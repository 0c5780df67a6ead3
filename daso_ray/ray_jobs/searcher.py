"""OptunaSearch that keeps low-fidelity values low-fidelity, and an ASHA that never stops the
baseline (README, "Search": baseline first, honest multi-fidelity).

Ray's ``OptunaSearch`` stores a trial that ASHA stopped at its first rung as COMPLETE with that
rung's value, so TPE (and optuna-dashboard) take a 300-iteration value for a final one; it files
intermediate values under Tune's report count, and a trial that errored after reporting becomes
COMPLETE too. Here:

- an intermediate value is filed under the training iteration (``step``) it was measured at;
- a trial that ended before ``max_t`` iterations is PRUNED (Optuna keeps its intermediate values;
  TPE treats it as a pruned trial, not as a finished one);
- an errored trial, one whose objective is not finite, or one whose last result carries
  ``failed`` (a deterministic failure the trial caught, see ``trial.py``) is FAIL, the reason kept
  as the Optuna trial's ``failed`` user attribute;
- only a trial that reached ``max_t`` is COMPLETE, with its final objective.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import SimpleNamespace

from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger(__name__)


class StudySearch(OptunaSearch):
    """``OptunaSearch`` with honest trial states; ``max_t``: the trial budget in iterations."""

    def __init__(self, *args, max_t: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._max_t = max_t
        self._last_step: dict[str, int] = {}  # the step of each trial's last filed value

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, list) or trial_id in self._completed_trials:
            return  # Optuna keeps no intermediate values for multi-objective studies
        value, step = result.get(self.metric), result.get("step")
        finite = isinstance(value, int | float) and math.isfinite(value)
        if finite and isinstance(step, int) and self._last_step.get(trial_id) != step:
            self._ot_trials[trial_id].report(float(value), step)
            self._last_step[trial_id] = step

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [(result or {}).get(m) for m in metrics]
        finite = all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        failed = (result or {}).get("failed")
        if error or failed or (result and not finite and result.get("step", 0) >= self._max_t):
            state, told = TrialState.FAIL, None
        elif not result or result.get("step", 0) < self._max_t:
            state, told = TrialState.PRUNED, None
        else:
            state, told = TrialState.COMPLETE, values if len(values) > 1 else values[0]
        if state is TrialState.PRUNED and result:
            # Tune does not pass the result that made ASHA stop the trial to on_trial_result:
            # file it here, so the pruned trial keeps the value it was stopped on.
            self.on_trial_result(trial_id, result)
        try:
            if failed:
                self._ot_trials[trial_id].set_user_attr("failed", str(failed))
            self._ot_study.tell(self._ot_trials[trial_id], told, state=state)
        except Exception as exc:  # noqa: BLE001 — a storage hiccup must not stop the search
            log.warning("optuna tell(%s) for trial %s failed: %s", state.name, trial_id, exc)
        self._completed_trials.add(trial_id)


class BaselineASHA(ASHAScheduler):
    """ASHA whose rungs record the baseline trial's values but never stop it: the baseline must
    reach the trial budget, so a study's best finished trial is never below the base config on
    the study's own objective (and verification has a finished baseline to compare with).
    ``baseline``: {config path: value}, the trial config the baseline is enqueued with.

    ``study_dir``: the study's Tune folder. Tune does not save a scheduler's state with the
    experiment, so a restored study (``--resume``) would start with empty rungs and judge its
    trials against whatever reports first (a resumed baseline's later, better values stopped
    trials on ties). At the first trial it is handed, the scheduler refills its rungs from every
    trial's recorded results instead: the decisions an uninterrupted study would have made."""

    def __init__(self, *args, baseline: dict, study_dir: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._baseline = dict(baseline)
        self._study_dir, self._refilled = study_dir, False

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self._refilled:
            self._refilled = True
            self._refill()
        super().on_trial_add(tune_controller, trial)

    def _refill(self) -> None:
        """Record every trial's reported (step, objective) in the rungs, in step order."""
        if not self._study_dir or len(self._brackets) != 1:
            return
        from daso_ray.study.leaderboard import read_trials

        bracket = self._brackets[0]
        for t in read_trials(Path(self._study_dir)):
            ref = SimpleNamespace(trial_id=t["trial_id"])  # what a rung keys its values by
            for step, value in t["curve"]:
                if isinstance(value, int | float) and math.isfinite(value):
                    bracket.on_result(ref, step, self._metric_op * value)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)  # records the rung value
        reached = result.get(self._time_attr, 0) >= self._max_t
        if action == TrialScheduler.STOP and not reached and trial.config == self._baseline:
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action
