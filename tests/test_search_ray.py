"""The search on a real local Ray cluster with two raylets (simulated nodes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from daso_ray.study.leaderboard import leaderboard
from tests.search_helpers import (
    complete_trials,
    optuna_study,
    run,
    run_env,
    search_cmd,
    search_dict,
    write_base,
    write_search,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a second raylet started with ``ray start`` (each its own temp dir), token auth
    on with a throw-away token. Yields the address."""
    from tests.search_helpers import start_cluster, stop_cluster

    address = start_cluster(tmp_path_factory.mktemp("ray"))
    yield address
    stop_cluster()


def _final_steps(run_dir, study) -> dict[str, list[int]]:
    out = {}
    for res in sorted((run_dir / study).glob("*/result.json")):
        lines = [json.loads(ln) for ln in res.read_text().splitlines() if ln.strip()]
        out[res.parent.name] = [r["step"] for r in lines]
    return out


@pytest.fixture(scope="module")
def smoke_run(cluster, digits_root, tmp_path_factory):
    """A 6-trial search with ASHA on the two-raylet cluster: (work dir, run dir, CompletedProcess)."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    write_base(tmp_path, digits_root)
    spec = search_dict(tmp_path / "runs", budget={
        "num_samples": 6, "max_concurrent": 2, "iterations": 60,
        "asha": {"grace": 10, "reduction": 3}})
    res = run(search_cmd(write_search(tmp_path, spec), cluster))
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp_path, tmp_path / "runs" / "t", res


def test_smoke_search_asha_export_and_train(smoke_run):
    tmp_path, run_dir, res = smoke_run
    assert "leaderboard" in res.stdout and "[consistent]" in res.stdout
    board = leaderboard(run_dir)["consistent"]
    assert len(board["finished"]) + len(board["stopped"]) == 6
    assert board["finished"], "no trial reached the budget"
    assert board["stopped"], "ASHA stopped no trial early"
    # Honest multi-fidelity: only top-rung trials are COMPLETE; every ASHA stop is PRUNED and
    # keeps its intermediate values, filed under the training iteration they were measured at.
    study = optuna_study(run_dir, "t__consistent")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == len(board["finished"]), states
    assert states.count("PRUNED") == len(board["stopped"]), states
    for t in study.trials:
        if t.state.name == "PRUNED":
            assert t.intermediate_values and max(t.intermediate_values) < 60
    # Baseline first: Optuna's trial 0 carries the base config's values, and the leaderboard
    # marks that Tune trial as the baseline.
    base_values = {"optim.lr": 0.03, "algorithm.daso.t_proto": 0.05}
    assert study.trials[0].params == base_values
    marked = [t for b in board.values() for t in b if t["baseline"]]
    assert len(marked) == 1 and marked[0]["params"] == base_values
    assert marked[0] in board["finished"]  # ASHA never stops the baseline
    assert "(baseline)" in res.stdout
    assert list((run_dir / "consistent").glob("*/events.out.tfevents.*"))  # TensorBoard per trial

    out = tmp_path / "best"
    exp = run([sys.executable, "-m", "daso_ray.export", str(run_dir), "--out", str(out), "--top-k", "2"])
    assert exp.returncode == 0, exp.stderr
    files = sorted(out.glob("*.yaml"))
    names = ["t__consistent.yaml", "t__consistent__top2.yaml"][:len(board["finished"])]
    assert [f.name for f in files] == names  # --top-k 2: at most the finished trials
    text = files[0].read_text()
    best = board["finished"][0]
    assert best["trial_id"] in text and "sha256" in text and "valid/top1_median" in text
    train = run([sys.executable, "-m", "daso_ray.train", str(files[0]), "--set", "run.iterations=20",
                 "--out", str(tmp_path / "final")])
    assert train.returncode == 0, train.stderr[-2000:]
    final = json.loads((tmp_path / "final" / "results.json").read_text())
    assert "eval/top1" in final and final["config"]["optim"]["lr"] == best["params"]["optim.lr"]


def test_sigkill_driver_then_resume_finishes_every_trial_once(cluster, digits_root, tmp_path):
    write_base(tmp_path, digits_root)
    spec = search_dict(tmp_path / "runs", budget={"num_samples": 5, "max_concurrent": 2,
                                                  "iterations": 60})
    file = write_search(tmp_path, spec)
    run_dir = tmp_path / "runs" / "t"
    proc = subprocess.Popen(search_cmd(file, cluster), env=run_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once one trial has finished and others are running
        steps = _final_steps(run_dir, "consistent") if run_dir.exists() else {}
        if any(s and s[-1] == 60 for s in steps.values()) and len(steps) >= 3:
            break
        time.sleep(0.5)
    else:
        pytest.fail("no trial finished in time")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {k: v for k, v in _final_steps(run_dir, "consistent").items() if v and v[-1] == 60}
    assert len(before) < 5

    res = run(search_cmd(file, cluster, "--resume"))
    assert res.returncode == 0, res.stderr[-3000:]
    after = _final_steps(run_dir, "consistent")
    assert len(after) == 5 and all(s[-1] == 60 for s in after.values()), after
    for name, steps in before.items():  # a finished trial is neither lost nor run again
        assert after[name] == steps
    done = complete_trials(run_dir, "t__consistent")
    assert len(done) == 5
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == 5


def test_ddp_trial_with_two_cpu_workers_reports_rank0_metrics(cluster, digits_root, tmp_path,
                                                              smoke_run):
    write_base(tmp_path, digits_root)
    spec = search_dict(tmp_path / "runs", budget={"num_samples": 1, "iterations": 30},
                       resources={"mode": "ddp", "workers": 2, "cpu": 1})  # past P = 20
    res = run(search_cmd(write_search(tmp_path, spec), cluster))
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = tmp_path / "runs" / "t"
    (trial,) = leaderboard(run_dir)["consistent"]["finished"]
    rank0 = [json.loads(ln) for ln in
             (next((run_dir / "consistent").glob("*/runs/consistent__seed0")) / "metrics.jsonl")
             .read_text().splitlines()]
    assert rank0[-1]["step"] == 30
    assert trial["last"]["objective"] == rank0[-1]["valid/top1_median"]
    assert trial["last"]["consistent/eval/top1"] == rank0[-1]["eval/top1"]
    # One aggregation function for both modes: a ddp trial reports the names a single one does.
    single = leaderboard(smoke_run[1])["consistent"]["finished"][0]["last"]
    ours = lambda m: {k for k in m if k.startswith(("consistent/", "objective"))}  # noqa: E731
    assert ours(trial["last"]) == ours(single)


def test_studies_of_one_search_run_at_the_same_time(cluster, digits_root, tmp_path):
    """Two scenarios -> two studies, each with max_concurrent 1: they are in flight together
    (the old driver ran them one after the other), seen from Tune's trial start/end times."""
    write_base(tmp_path, digits_root)
    scenarios = [{"name": n, "unlabeled": n, "n1": 20, "m1": 60, "gamma_l": 5,
                  "gamma_u": 1 if n == "uniform" else 5} for n in ("consistent", "uniform")]
    spec = search_dict(tmp_path / "runs", scenarios=scenarios,
                       budget={"num_samples": 2, "max_concurrent": 1, "iterations": 30})
    res = run(search_cmd(write_search(tmp_path, spec), cluster))
    assert res.returncode == 0, res.stderr[-3000:]
    board = leaderboard(tmp_path / "runs" / "t")
    spans = {study: [(t["start"], t["end"]) for t in b["finished"] + b["stopped"]]
             for study, b in board.items()}
    assert all(len(v) == 2 for v in spans.values()), spans
    a, b = spans["consistent"], spans["uniform"]
    assert any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b), spans
    # Each study's trials trained its own scenario (one job registers every study's trainable:
    # under a shared name one study's trials ran another's scenario) and wrote in its folder.
    for study, b in board.items():
        for t in b["finished"] + b["stopped"]:
            assert f"{study}/valid/top1_median" in t["last"], (study, sorted(t["last"]))
            runs = {p.name for p in (tmp_path / "runs" / "t" / study).glob("trial_*/runs/*")}
            assert runs == {f"{study}__seed0"}, (study, runs)


def test_report_renders_in_headless_chromium(smoke_run, tmp_path):
    """The HTML report of a real run: the leaderboard's numbers are in the rendered page, the
    winner's per-class recall is ordered head -> tail, and the screenshot shows the charts."""
    from tests.report_helpers import chromium_render, colour_fraction, ink_fraction

    _, run_dir, _ = smoke_run
    out = tmp_path / "report.html"
    res = run([sys.executable, "-m", "daso_ray.report", str(run_dir), "--out", str(out)])
    assert res.returncode == 0, res.stderr[-2000:]
    dom, png = chromium_render(out, tmp_path / "shot.png")
    board = leaderboard(run_dir)["consistent"]
    best = board["finished"][0]
    for t in board["finished"] + board["stopped"]:
        assert t["trial_id"] in dom
    assert f"{best['last']['objective']:.2f}" in dom
    assert f"{best['last']['consistent/eval/top1_median']:.2f}" in dom
    counts = best["last"]["consistent/data/labeled_counts"]
    assert counts == sorted(counts, reverse=True)  # LT split: class index order is head -> tail
    recall = best["last"]["consistent/eval/per_class_recall"]
    assert f"winner {best['trial_id']} c0: {recall[0]:.3g}" in dom
    assert f"winner {best['trial_id']} c9: {recall[9]:.3g}" in dom
    assert ink_fraction(png) > 0.01  # not a blank page: text, tables and axes drawn
    assert colour_fraction(png) > 0.001  # and the charts' coloured lines and bars


def _rows(run_dir) -> list[dict]:
    (res,) = (run_dir / "consistent").glob("*/result.json")
    return [json.loads(ln) for ln in res.read_text().splitlines() if ln.strip()]


def test_kill9_trial_worker_resumes_from_checkpoint_with_identical_metrics(cluster, digits_root,
                                                                              tmp_path):
    """SIGKILL of the trial's process after its first checkpoint: Tune restarts it from that
    checkpoint, and its final metrics equal those of the same trial run without interruption."""
    base = write_base(tmp_path, digits_root)
    raw = yaml.safe_load(base.read_text())
    raw["run"].update(iterations=160, eval_period=20, checkpoint_period=40)
    base.write_text(yaml.safe_dump(raw))
    fixed = {"optim.lr": {"type": "choice", "values": [0.03]},  # the base's values: the one trial
             "algorithm.daso.t_proto": {"type": "choice", "values": [0.05]}}  # is the baseline
    spec = search_dict(tmp_path / "runs", params=fixed,
                       budget={"num_samples": 1, "iterations": 160, "max_failures": 2})
    file = write_search(tmp_path, spec)
    clean = run(search_cmd(file, cluster, "--name", "clean"))
    assert clean.returncode == 0, clean.stderr[-3000:]

    proc = subprocess.Popen(search_cmd(file, cluster, "--name", "killed"), env=run_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "runs" / "killed"
    deadline, victim = time.time() + 300, None
    while victim is None and time.time() < deadline:
        try:
            rows = _rows(run_dir)
        except (ValueError, FileNotFoundError):
            rows = []
        if rows and rows[-1]["step"] >= 60:  # the step-40 checkpoint is in Tune's storage
            victim = rows[-1]["pid"]
        time.sleep(0.2)
    assert victim is not None, "the trial never got past its first checkpoint"
    os.kill(victim, signal.SIGKILL)
    assert proc.wait(timeout=600) == 0

    rows, ref = _rows(run_dir), _rows(tmp_path / "runs" / "clean")
    assert rows[-1]["step"] == 160
    assert rows[0]["pid"] != rows[-1]["pid"], [(r["step"], r["pid"]) for r in rows]  # a new process
    # ... that started from the checkpoint, not from scratch (Tune counts reports since restore).
    assert rows[-1]["iterations_since_restore"] < rows[-1]["training_iteration"], rows[-1]
    keys = [k for k in ref[-1] if k.startswith("consistent/") and "perf/" not in k]
    assert keys and {k: rows[-1][k] for k in keys} == {k: ref[-1][k] for k in keys}
    assert rows[-1]["objective"] == ref[-1]["objective"]



def _copy_with_a_winner(run_dir, dst):
    """The smoke run copied (the shared fixture stays untouched), its baseline trial demoted if
    it won: this test is about the training path (a baseline winner trains nothing and is
    covered by tests/test_verify.py)."""
    import shutil

    shutil.copytree(run_dir, dst)
    finished = leaderboard(dst)["consistent"]["finished"]
    if finished[0]["baseline"]:
        if len(finished) < 2:
            pytest.skip("the baseline is the smoke search's only finished trial")
        res = dst / "consistent" / os.path.basename(finished[0]["dir"]) / "result.json"
        rows = [json.loads(ln) for ln in res.read_text().splitlines() if ln.strip()]
        rows[-1]["objective"] = finished[-1]["last"]["objective"] - 1
        res.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def test_verify_smoke_on_held_out_seeds_then_export_copies_the_verdict(smoke_run, cluster, tmp_path):
    """``verify --smoke`` on the cluster: winner and baseline trained on seeds 100 and 101 as Ray
    tasks, verify.json per study, then export puts the verdict in the header. A second verify
    trains nothing (no Ray at all)."""
    run_dir = _copy_with_a_winner(smoke_run[1], tmp_path / "t")
    res = run([sys.executable, "-m", "daso_ray.verify", str(run_dir), "--smoke", "--address", cluster])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "[verify] training 4 of 4 runs" in res.stdout
    report = json.loads((run_dir / "verify.json").read_text())
    assert report["metric"] == "eval/top1_median" and report["seeds"] == [100, 101]
    e = report["studies"]["consistent"]
    assert e["verdict"] in ("adopt", "keep_baseline", "inconclusive")
    # --smoke: two evaluation windows (10) past DASO's pre-training P = 20
    assert e["seeds"] == [100, 101] and e["iterations"] == 40
    best = leaderboard(run_dir)["consistent"]["finished"][0]
    assert e["winner"]["trial_id"] == best["trial_id"] and not best["baseline"]
    base, win = e["baseline"]["values"], e["winner"]["values"]
    assert len(base) == len(win) == 2
    assert e["gain"] == pytest.approx((win[0] - base[0] + win[1] - base[1]) / 2)
    lo, hi = e["ci"]
    assert lo <= e["gain"] <= hi
    for role, value in (("baseline", base[0]), ("winner", win[0])):
        done = json.loads((run_dir / "verify" / "consistent" / role / "consistent__seed100" /
                           "results.json").read_text())
        assert done["eval/top1_median"] == value and done["iterations"] == 40
        assert done["config"]["run"]["seed"] == 100 == done["config"]["data"]["seed_split"]
        assert done["config"]["optim"]["lr"] == e[role]["params"]["optim.lr"]
    assert e["verdict"] in res.stdout and res.stdout.rstrip().endswith("more seeds may decide)")

    again = run([sys.executable, "-m", "daso_ray.verify", str(run_dir), "--smoke"])
    assert again.returncode == 0, again.stderr[-2000:]
    assert "nothing to train" in again.stdout and "Started a local Ray" not in again.stderr
    assert json.loads((run_dir / "verify.json").read_text())["studies"] == report["studies"]

    out = tmp_path / "verified"
    exp = run([sys.executable, "-m", "daso_ray.export", str(run_dir), "--out", str(out)])
    assert exp.returncode == 0, exp.stderr
    text = (out / "t__consistent.yaml").read_text()
    assert f"# verify: {e['verdict']} — " in text and f"gain {e['gain']:+.2f} points" in text
    assert e["verdict"] in exp.stdout
