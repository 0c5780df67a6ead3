"""Issue 13, search parts: trials that can never fit the cluster, ``when`` values the condition
parameter never takes, fractional int domains, smoke runs taking the real run's folder,
``report --out`` into a missing folder, and ``daso-ray --help``. One Ray test (a local cluster);
the rest run without Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from daso_ray.search import main as search_main
from daso_ray.study.spec import Resources
from tests.search_helpers import REPO, search_dict, write_base, write_search


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# --- 11: trials that can never fit the cluster ------------------------------------------------

FIT = [
    ("single cpu above every node", {"cpu": 3}, [{"CPU": 2}], "resources.cpu", "3 CPU"),
    ("ddp whose driving actor leaves 1.99", {"mode": "ddp", "workers": 2, "cpu": 1}, [{"CPU": 2}],
     "resources.workers", "2.01 CPU"),
    ("gpu on a cpu-only cluster", {"gpu": 1}, [{"CPU": 8, "GPU": 0}], "resources.gpu", "1 GPU"),
    ("ddp worker above every node", {"mode": "ddp", "workers": 2, "cpu": 4},
     [{"CPU": 2}, {"CPU": 2}], "resources.cpu", "4 CPU"),
    ("cpu and gpu never on one node", {"cpu": 4, "gpu": 1}, [{"CPU": 4}, {"CPU": 1, "GPU": 1}],
     "resources:", "4 CPU, 1 GPU"),
]


@pytest.mark.parametrize("case,res,nodes,key,need", FIT, ids=[f[0] for f in FIT])
def test_a_trial_no_node_can_hold_is_named_with_its_need(case, res, nodes, key, need):
    from daso_ray.study.fit import fit_problem

    problem = fit_problem(Resources(**res), nodes)
    assert problem is not None and problem.startswith(key) and need in problem, problem
    assert "node" in problem and "\n" not in problem


@pytest.mark.parametrize("res,nodes", [
    ({"cpu": 2}, [{"CPU": 2}]),
    ({"cpu": 0.5, "gpu": 0.25}, [{"CPU": 1}, {"CPU": 1, "GPU": 1}]),
    ({"mode": "ddp", "workers": 2, "cpu": 0.99}, [{"CPU": 2}]),  # 2 × 0.99 + 0.01 = 2
    ({"mode": "ddp", "workers": 2, "cpu": 1}, [{"CPU": 2}, {"CPU": 2}]),  # workers may spread
    ({"mode": "ddp", "workers": 2, "cpu": 1, "gpu": 1}, [{"CPU": 1, "GPU": 1}, {"CPU": 2, "GPU": 1}]),
])
def test_a_trial_that_fits_passes(res, nodes):
    from daso_ray.study.fit import fit_problem

    assert fit_problem(Resources(**res), nodes) is None


def test_fixed_cluster_refuses_and_autoscaling_cluster_warns(monkeypatch, capsys):
    from daso_ray.errors import UserError
    from daso_ray.ray_jobs import cluster

    monkeypatch.setattr(cluster, "node_resources", lambda: [{"CPU": 2.0, "GPU": 0.0}])
    res = Resources(cpu=3)
    with pytest.raises(UserError, match="resources.cpu"):
        cluster.check_fit(res, started_here=True)
    monkeypatch.setattr(cluster, "is_autoscaling", lambda: False)
    with pytest.raises(UserError, match="resources.cpu"):
        cluster.check_fit(res, started_here=False)
    monkeypatch.setattr(cluster, "is_autoscaling", lambda: True)
    cluster.check_fit(res, started_here=False)
    out = capsys.readouterr().out
    assert out.startswith("note: resources.cpu") and "3 CPU on one node" in out


def test_autoscaling_is_read_from_the_autoscaler_status():
    from daso_ray.study.fit import autoscaling

    readonly = {"autoscaler_report": {"active_nodes": {"node_ab12": 1, "node_cd34": 1}}}
    real = {"autoscaler_report": {"active_nodes": {"head": 1}, "pending_launches": {"gpu": 2}}}
    assert autoscaling(json.dumps(readonly)) is False
    assert autoscaling(json.dumps(real)) is True
    assert autoscaling(None) is True and autoscaling(b"not json") is True  # unsure: warn only


@pytest.mark.ray
def test_local_cluster_too_small_for_a_trial_fails_in_one_line(tmp_path, digits_root):
    write_base(tmp_path, digits_root)
    storage = tmp_path / "runs"
    file = write_search(tmp_path, search_dict(storage, resources={"cpu": 3}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    res = subprocess.run([sys.executable, "-m", "daso_ray.search", str(file), "--num-cpus", "2"],
                         capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert res.returncode == 2, res.stderr[-2000:]
    assert len(errors) == 1 and "resources.cpu" in errors[0] and "2 CPU" in errors[0], errors
    assert "Traceback" not in res.stderr and not storage.exists()  # nothing half-written


# --- 14a/b: when values and int domains --------------------------------------------------------

def _params(when_value, cond=None) -> dict:
    return {"algorithm.daso.dist_aware": cond or {"type": "choice", "values": [True, False]},
            "algorithm.daso.interp_alpha": {"type": "float", "low": 0.1, "high": 0.9,
                                            "when": {"algorithm.daso.dist_aware": when_value}}}


@pytest.mark.parametrize("value", ["false", 0, ["false"], [False, "true"]])
def test_when_value_the_condition_never_takes_is_refused(tmp_path, digits_root, capsys, value):
    write_base(tmp_path, digits_root)
    storage = tmp_path / "runs"
    file = write_search(tmp_path, search_dict(storage, params=_params(value)))
    assert search_main([str(file)]) == 2
    line = _one_error(capsys)
    assert "params.algorithm.daso.interp_alpha.when.algorithm.daso.dist_aware" in line, line
    assert "one of [true, false]" in line and not storage.exists()


def test_when_value_outside_a_numeric_domain_is_refused(tmp_path, digits_root, capsys):
    write_base(tmp_path, digits_root)
    params = {"algorithm.daso.t_proto": {"type": "float", "low": 0.02, "high": 1.0},
              "algorithm.daso.interp_alpha": {"type": "float", "low": 0.1, "high": 0.9,
                                              "when": {"algorithm.daso.t_proto": [0.05, 2.0]}}}
    file = write_search(tmp_path, search_dict(tmp_path / "runs", params=params))
    assert search_main([str(file)]) == 2
    line = _one_error(capsys)
    assert "when.algorithm.daso.t_proto: 2.0" in line and "[0.02, 1]" in line, line


def test_int_domain_with_a_fraction_is_refused(tmp_path, digits_root, capsys):
    write_base(tmp_path, digits_root)
    params = {"algorithm.daso.queue_length": {"type": "int", "low": 4.5, "high": 128}}
    storage = tmp_path / "runs"
    file = write_search(tmp_path, search_dict(storage, params=params))
    assert search_main([str(file)]) == 2
    line = _one_error(capsys)
    assert "params.algorithm.daso.queue_length" in line and "low: 4.5" in line, line
    assert "whole numbers" in line and "low: 5" in line and not storage.exists()


# --- 14c: a smoke run has a folder of its own ---------------------------------------------------

def test_smoke_run_and_real_run_of_one_file_do_not_collide(tmp_path, digits_root):
    from daso_ray.search import _prepare_run_dir, run_name
    from daso_ray.study.load import load_search, smoke

    write_base(tmp_path, digits_root)
    file = write_search(tmp_path, search_dict(tmp_path / "runs"))
    spec, base = load_search(file)
    assert run_name("t", None, smoke=True) == "t_smoke" and run_name("t", "x", smoke=True) == "x"
    small, small_base = smoke(spec.model_copy(update={"name": run_name(spec.name, None, True)}), base)
    smoke_dir, _ = _prepare_run_dir(small, small_base, file, resume=False)
    real = spec.model_copy(update={"name": run_name(spec.name, None, False)})
    real_dir, _ = _prepare_run_dir(real, base, file, resume=False)  # not refused as taken
    assert smoke_dir != real_dir
    assert json.loads((real_dir / "search.json").read_text())["spec"]["budget"]["num_samples"] == 4
    assert json.loads((smoke_dir / "search.json").read_text())["name"] == "t_smoke"


# --- 14d: report --out --------------------------------------------------------------------------

def test_report_out_creates_its_folder_or_fails_in_one_line(tmp_path, capsys):
    from daso_ray.report import main as report_main
    from tests.report_helpers import make_run

    run = make_run(tmp_path)
    out = tmp_path / "missing" / "dir" / "r.html"
    assert report_main([str(run), "--out", str(out)]) == 0
    assert out.read_text().startswith("<!doctype html>")
    (tmp_path / "afile").write_text("x")
    capsys.readouterr()
    assert report_main([str(run), "--out", str(tmp_path / "afile" / "r.html")]) == 2
    assert "--out" in _one_error(capsys)
    assert report_main([str(run), "--out", str(tmp_path / "missing")]) == 2
    assert "is a folder" in _one_error(capsys)


# --- 14e: daso-ray --help -----------------------------------------------------------------------

def test_daso_ray_help_describes_every_command(capsys):
    from daso_ray.cli import COMMANDS, main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 10, line  # a word on each, not the name alone
    assert "Hyperparameter search" in out
    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in COMMANDS) and "Hyperparameter search" in err
