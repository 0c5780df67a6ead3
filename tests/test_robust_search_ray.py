"""Issue 13, cases 10 and 12, on real local Ray clusters (each search starts and stops its own
with ``--num-cpus 2``): a diverging trial is one FAIL with its reason, not a failed search; a
wrong ``data.root`` is refused before Ray starts; one Ctrl-C stops the whole search, which
``--resume`` then finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from daso_ray.search import main as search_main
from daso_ray.study.leaderboard import leaderboard
from tests.search_helpers import REPO, optuna_study, search_dict, write_base, write_search


def _env() -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_THREADING_LAYER": "tbb"}
    env.pop("RAY_ADDRESS", None)  # a local cluster of its own, never the machine's others
    return env


def _cmd(file, *extra: str, cpus: int = 2) -> list[str]:
    return [sys.executable, "-m", "daso_ray.search", str(file), "--num-cpus", str(cpus), *extra]


def _run(cmd, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=REPO)


def _two_scenarios() -> list[dict]:
    return [{"name": n, "unlabeled": n, "n1": 20, "m1": 60, "gamma_l": 5,
             "gamma_u": 1 if n == "uniform" else 5} for n in ("consistent", "uniform")]


# --- 10: one diverging trial --------------------------------------------------------------------

@pytest.mark.ray
@pytest.mark.slow
def test_diverging_trial_fails_alone_and_resume_does_not_repeat_it(tmp_path, digits_root):
    write_base(tmp_path, digits_root)
    spec = search_dict(tmp_path / "runs", params={"optim.lr": {"type": "choice",
                                                               "values": [0.03, 1.0e30]}},
                       scenarios=_two_scenarios(), sampler="grid",
                       budget={"num_samples": 3, "max_concurrent": 2, "iterations": 30,
                               "max_failures": 2})
    file = write_search(tmp_path, spec)
    res = _run(_cmd(file))
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = tmp_path / "runs" / "t"
    board = leaderboard(run_dir)
    saved = json.loads((run_dir / "leaderboard.json").read_text())
    for study, b in board.items():
        # the baseline, then the grid's two points: 0.03 again and the diverging one
        assert [t["params"]["optim.lr"] for t in b["finished"]] == [0.03, 0.03], (study, b)
        (bad,) = b["failed"]
        assert bad["params"]["optim.lr"] == 1.0e30 and "non-finite loss" in bad["failed"]
        assert not b["stopped"] and not b["interrupted"]
        # The printed summary names the failed trial and its reason; so does leaderboard.json.
        assert bad["trial_id"] in res.stdout and bad["failed"] in res.stdout
        assert saved[study]["failed"][0]["reason"] == bad["failed"]
        # One attempt: no Tune retry of a deterministic failure (a retry appends to result.json).
        rows = (run_dir / study / os.path.basename(bad["dir"]) / "result.json").read_text()
        assert rows.count('"failed"') == 1
        states = sorted(t.state.name for t in optuna_study(run_dir, f"t__{study}").trials)
        assert states == ["COMPLETE", "COMPLETE", "FAIL"], states
        (fail,) = [t for t in optuna_study(run_dir, f"t__{study}").trials if t.state.name == "FAIL"]
        assert "non-finite loss" in fail.user_attrs["failed"]

    again = _run(_cmd(file, "--resume"))  # the failure is recorded, not replayed
    assert again.returncode == 0, again.stderr[-3000:]
    assert leaderboard(run_dir) == board


@pytest.mark.ray
@pytest.mark.slow
def test_diverging_ddp_trial_fails_once_with_its_reason(tmp_path, digits_root):
    """The same for ``mode: ddp``: the non-finite loss is raised in the Ray Train workers and
    reaches the trial wrapped by Train; it is still one FAIL with its reason, not a retry."""
    write_base(tmp_path, digits_root)
    spec = search_dict(tmp_path / "runs", params={"optim.lr": {"type": "choice",
                                                               "values": [0.03, 1.0e30]}},
                       sampler="grid", resources={"mode": "ddp", "workers": 2, "cpu": 0.99},
                       budget={"num_samples": 3, "max_concurrent": 2, "iterations": 20,
                               "max_failures": 2})
    res = _run(_cmd(write_search(tmp_path, spec), cpus=4))  # two trials at a time
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = tmp_path / "runs" / "t"
    b = leaderboard(run_dir)["consistent"]
    assert [t["params"]["optim.lr"] for t in b["finished"]] == [0.03, 0.03], b
    (bad,) = b["failed"]
    # the single-mode reason: the run's name, then the error's first line
    assert bad["params"]["optim.lr"] == 1.0e30
    assert bad["failed"].startswith("consistent__seed0: non-finite loss at iteration"), bad
    assert bad["failed"] in res.stdout
    rows = (run_dir / "consistent" / os.path.basename(bad["dir"]) / "result.json").read_text()
    assert rows.count('"failed"') == 1  # one attempt: Tune did not retry it
    # nor did Ray Train: its controller logs each worker-group failure's decision
    assert "[FailurePolicy] RAISE" in res.stderr and "[FailurePolicy] RETRY" not in res.stderr
    fails = [t for t in optuna_study(run_dir, "t__consistent").trials if t.state.name == "FAIL"]
    assert len(fails) == 1 and "non-finite loss" in fails[0].user_attrs["failed"]


def test_deterministic_cause_is_found_through_rays_wrappers():
    """What a ddp trial catches from ``TorchTrainer.fit()`` (Ray 2.60): a ``WorkerGroupError``
    mapping each failed rank to its exception; the driver sees it inside a ``RayTaskError``."""
    from ray.exceptions import RayTaskError
    from ray.train import WorkerGroupError

    from daso_ray.engine.step import NonFiniteLoss
    from daso_ray.errors import UserError, deterministic_cause

    rank0, rank1 = NonFiniteLoss("non-finite loss at iteration 9"), UserError("bad key")
    group = WorkerGroupError("rank errors", {1: rank1, 0: rank0})
    assert deterministic_cause(group) is rank0  # rank 0's reason, as in the leaderboard
    task = RayTaskError("ImplicitFunc.train", "Traceback ...", group).as_instanceof_cause()
    assert deterministic_cause(task) is rank0
    try:  # chained by Python
        try:
            raise rank1
        except UserError as err:
            raise RuntimeError("while cleaning up") from err
    except RuntimeError as err:
        assert deterministic_cause(err) is rank1
    # an infrastructure failure (a worker that died) is left to the retries
    assert deterministic_cause(WorkerGroupError("died", {0: RuntimeError("actor died")})) is None


def test_bad_data_root_in_set_is_one_error_before_ray(tmp_path, digits_root, capsys):
    write_base(tmp_path, digits_root)
    missing = tmp_path / "no_such_data"
    empty = tmp_path / "empty"
    empty.mkdir()
    for root, what in ((missing, "does not exist"), (empty, "no manifest.json")):
        spec = search_dict(tmp_path / "runs", set={"data.root": str(root)})
        assert search_main([str(write_search(tmp_path, spec))]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: set.data.root"), err
        assert what in err[0] and f"python -m daso_ray.prepare digits --out {root}" in err[0]
    assert not (tmp_path / "runs").exists()  # refused before anything was written


# --- 12: one Ctrl-C ---------------------------------------------------------------------------

T_CTRL_C = 300

def _steps(run_dir) -> dict[str, int]:
    out = {}
    for res in run_dir.glob("*/trial_*/result.json"):
        rows = [json.loads(ln) for ln in res.read_text().splitlines() if ln.strip()]
        out[str(res.parent)] = rows[-1]["step"] if rows else 0
    return out


@pytest.mark.ray
@pytest.mark.slow
def test_one_ctrl_c_stops_the_whole_search_and_resume_finishes_it(tmp_path, digits_root):
    write_base(tmp_path, digits_root)
    # Trials long enough that a Ctrl-C lands part-way through them on a fast idle machine too
    # (at 60 iterations both running trials could finish while the studies saved).
    spec = search_dict(tmp_path / "runs", scenarios=_two_scenarios(),
                       budget={"num_samples": 2, "max_concurrent": 1, "iterations": T_CTRL_C})
    file = write_search(tmp_path, spec)
    run_dir = tmp_path / "runs" / "t"
    proc = subprocess.Popen(_cmd(file), env=_env(), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # both studies have a trial part-way through
        steps = _steps(run_dir) if run_dir.exists() else {}
        if len(steps) >= 2 and all(0 < s < T_CTRL_C // 2 for s in steps.values()):
            break
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("no trials running in time")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the foreground group
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("one Ctrl-C did not stop the search")
    assert proc.returncode == 130, out[-3000:]
    assert "--resume" in out and "Traceback" not in out, out[-3000:]
    board = leaderboard(run_dir)
    for study, b in board.items():  # cut short by Ctrl-C, not by ASHA (there is none here)
        assert not b["stopped"] and not b["failed"], (study, b)
    # the search stopped as a whole: trials were left part-way (a running one may have finished
    # its last window while the studies saved)
    assert sum(len(b["finished"]) for b in board.values()) < 4
    assert any(b["interrupted"] for b in board.values()), board

    res = _run(_cmd(file, "--resume"))
    assert res.returncode == 0, res.stderr[-3000:]
    board = leaderboard(run_dir)
    for study, b in board.items():
        assert len(b["finished"]) == 2 and not b["interrupted"] and not b["stopped"], (study, b)
        states = [t.state.name for t in optuna_study(run_dir, f"t__{study}").trials]
        assert states == ["COMPLETE", "COMPLETE"], states
