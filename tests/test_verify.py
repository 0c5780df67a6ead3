"""Held-out verification without Ray: the paired statistics, verify.json from finished runs, and
export's use of the verdict. The Ray path is in tests/test_search_ray.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from scipy.stats import t

from daso_ray.config import to_dict
from daso_ray.study import verify as v
from tests.search_helpers import search_dict, write_base, write_search

# --- (a) statistics ---------------------------------------------------------------------------


def test_paired_matches_hand_computed_interval():
    out = v.paired([10.0, 20.0, 30.0], [11.0, 22.0, 33.0])  # d = [1, 2, 3]
    se = 1 / math.sqrt(3)  # sample std of d is 1
    half = t.ppf(0.975, 2) * se  # 4.303 * 0.577 = 2.48
    assert out["n"] == 3 and out["mean_baseline"] == 20 and out["mean_winner"] == 22
    assert out["gain"] == pytest.approx(2) and out["stderr"] == pytest.approx(se)
    assert out["ci"] == pytest.approx([2 - half, 2 + half])
    assert out["verdict"] == "inconclusive"  # the interval [-0.48, 4.48] contains 0


def test_paired_zero_width_interval_is_not_evidence():
    """Two seeds, each better by one test image (0.33 points): stderr 0, no noise estimate."""
    out = v.paired([21.5, 22.0], [21.5 + 1 / 3, 22.0 + 1 / 3])
    assert out["stderr"] == 0 and out["verdict"] == "inconclusive" and "more seeds" in out["reason"]


@pytest.mark.parametrize(("d", "verdict"), [([1.0, 1.2, 1.1], "adopt"),
                                            ([-2.0, -1.5, -2.0], "keep_baseline"),
                                            ([1.0, -1.0, 0.5], "inconclusive")])
def test_paired_verdicts(d, verdict):
    base = [80.0, 81.0, 82.0]
    out = v.paired(base, [b + x for b, x in zip(base, d, strict=True)])
    assert out["verdict"] == verdict and out["reason"]
    lo, hi = out["ci"]
    assert lo < out["gain"] < hi


def test_paired_level_widens_the_interval():
    narrow = v.paired([0.0] * 4, [1.0, 2.0, 1.5, 0.5], level=0.8)["ci"]
    wide = v.paired([0.0] * 4, [1.0, 2.0, 1.5, 0.5], level=0.99)["ci"]
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


def test_paired_needs_two_seeds():
    one = v.paired([80.0], [82.0])
    assert one["verdict"] == "inconclusive" and one["ci"] is None and one["stderr"] is None
    assert one["gain"] == 2 and "2" in one["reason"]
    assert v.paired([], [])["verdict"] == "inconclusive"
    with pytest.raises(ValueError):
        v.paired([1.0, 2.0], [1.0])


# --- a run directory without Ray ------------------------------------------------------------


def fake_run(tmp: Path, trials: dict[str, tuple[dict, float]], root: Path | None = None,
             study: str = "consistent", **over) -> Path:
    """A run dir as the search writes it, with finished Tune trials {id: (params, objective)}
    in ``study``; ``over``: search-file keys replaced."""
    from daso_ray.search import _prepare_run_dir
    from daso_ray.study.load import load_search

    write_base(tmp, root or tmp / "no_data")  # without root nothing trains: no data needed
    file = write_search(tmp, search_dict(tmp / "runs", **over))
    spec, base = load_search(file)
    run_dir, _ = _prepare_run_dir(spec, base, file, resume=False)
    for tid, (params, objective) in trials.items():
        d = run_dir / study / f"trial_{tid}"
        d.mkdir(parents=True)
        (d / "params.json").write_text(json.dumps(params))
        rows = [{"step": s, "objective": objective - (60 - s) / 10, "trial_id": tid}
                for s in (20, 40, 60)]
        (d / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return run_dir


BASE = {"optim.lr": 0.03, "algorithm.daso.t_proto": 0.05}  # write_base's own values
WIN = {"optim.lr": 0.1, "algorithm.daso.t_proto": 0.2}


def finish_jobs(run_dir: Path, plan: v.Plan, gain: list[float], base=(80.0, 81.0, 82.0)) -> dict:
    """results.json + config.yaml of every job, as run_one leaves them; {job name: results}."""
    out = {}
    for job in plan.jobs:
        i = plan.seeds.index(job.seed)
        value = base[i] + (gain[i] if job.role == "winner" else 0.0)
        res = {"eval/top1_median": value, "iterations": job.cfg.run.iterations, "final": {}}
        d = job.dir(run_dir)
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(res))
        (d / "config.yaml").write_text(yaml.safe_dump(to_dict(job.cfg)))
        out[job.name] = res
    return out


def test_plan_uses_held_out_seeds_and_the_exported_budget(tmp_path):
    run_dir = fake_run(tmp_path, {"a": (BASE, 80.0), "b": (WIN, 84.0)})
    plan = v.plan(run_dir, 3)
    assert plan.seeds == [100, 101, 102]
    assert {(j.role, j.seed) for j in plan.jobs} == {(r, s) for r in ("baseline", "winner")
                                                     for s in (100, 101, 102)}
    for job in plan.jobs:
        assert job.cfg.run.seed == job.seed == job.cfg.data.seed_split
        assert job.cfg.run.iterations == 60  # final_iterations: the trial budget
        want = WIN if job.role == "winner" else BASE
        assert job.cfg.optim.lr == want["optim.lr"]
        assert job.dir(run_dir) == run_dir.resolve() / "verify" / "consistent" / job.role / \
            f"consistent__seed{job.seed}"
    assert plan.studies["consistent"]["winner"]["trial_id"] == "b"
    smoke = v.plan(run_dir, 2, smoke=True)
    # two evaluation windows (10) past DASO's pre-training P = 20: before P every config is the
    # same FixMatch, and a smoke verdict would compare two identical runs
    assert {j.cfg.run.iterations for j in smoke.jobs} == {40}
    assert {j.cfg.run.checkpoint_period for j in smoke.jobs} == {40}


def test_summarize_write_read_and_table(tmp_path):
    run_dir = fake_run(tmp_path, {"a": (BASE, 80.0), "b": (WIN, 84.0)})
    plan = v.plan(run_dir, 3)
    report = v.summarize(plan, finish_jobs(run_dir, plan, [1.0, 1.2, 1.1]), run_dir)
    v.write(run_dir, report)
    e = v.read(run_dir)["studies"]["consistent"]
    assert e["baseline"]["values"] == [80.0, 81.0, 82.0]
    assert e["winner"]["values"] == pytest.approx([81.0, 82.2, 83.1])
    assert e["winner"]["per_scenario"] == {"consistent": e["winner"]["values"]}
    assert e["n"] == 3 and e["note"] == "the whole 95% interval is above 0"
    assert e["gain"] == pytest.approx(1.1) and e["verdict"] == "adopt"
    assert e["seeds"] == [100, 101, 102] and e["iterations"] == 60
    assert e["winner"]["params"] == WIN and e["baseline"]["params"] == BASE
    assert e["winner"]["trial_id"] == "b"
    table = v.format_table(v.read(run_dir))
    assert "consistent" in table and "+1.10" in table and "adopt" in table
    assert table.splitlines()[-1].startswith("verdict: adopt if")


def test_robust_study_pairs_the_mean_over_scenarios(tmp_path):
    scenarios = [{"name": "consistent", "unlabeled": "consistent", "n1": 20, "m1": 60,
                  "gamma_l": 5, "gamma_u": 5},
                 {"name": "uniform", "unlabeled": "uniform", "n1": 20, "m1": 60, "gamma_l": 5}]
    objective = {"type": "robust", "metric": "valid/top1_median", "min_resolution": 2}
    run_dir = fake_run(tmp_path, {"a": (BASE, 80.0), "b": (WIN, 84.0)}, study="robust",
                       scenarios=scenarios, objective=objective)
    plan = v.plan(run_dir, 2)
    assert len(plan.jobs) == 2 * 2 * 2  # roles x scenarios x seeds
    results = {}
    for j in plan.jobs:  # uniform scores 10 points lower; the winner gains 1 on uniform only
        value = 80.0 + j.seed - 100 - (10 if j.scenario == "uniform" else 0)
        value += 1.0 if (j.role, j.scenario) == ("winner", "uniform") else 0.0
        results[j.name] = {"eval/top1_median": value}
    e = v.summarize(plan, results, run_dir)["studies"]["robust"]
    assert e["baseline"]["values"] == [75.0, 76.0]  # per seed: mean of 80 and 70
    assert e["winner"]["values"] == [75.5, 76.5]
    assert e["winner"]["per_scenario"] == {"consistent": [80.0, 81.0], "uniform": [71.0, 72.0]}
    # Both seeds gain exactly 0.5: a zero-width interval is no evidence, not an adopt.
    assert e["gain"] == pytest.approx(0.5) and e["stderr"] == 0 and e["verdict"] == "inconclusive"


# --- (b) export with a verify.json --------------------------------------------------------------


def verified_export(tmp_path: Path, gain: list[float]) -> tuple[dict, dict, str]:
    from daso_ray.export import export

    run_dir = fake_run(tmp_path, {"a": (BASE, 80.0), "b": (WIN, 84.0)})
    plan = v.plan(run_dir, 3)
    report = v.summarize(plan, finish_jobs(run_dir, plan, gain), run_dir)
    v.write(run_dir, report)
    (rec,) = export(run_dir, tmp_path / "best")
    text = rec["path"].read_text()
    return report["studies"]["consistent"], yaml.safe_load(text), text


def test_export_keep_baseline_writes_the_baseline_values(tmp_path):
    entry, cfg, text = verified_export(tmp_path, [-2.0, -1.5, -2.0])
    assert entry["verdict"] == "keep_baseline"
    assert cfg["optim"]["lr"] == BASE["optim.lr"]
    assert cfg["algorithm"]["daso"]["t_proto"] == BASE["algorithm.daso.t_proto"]
    lo, hi = entry["ci"]
    assert (f"# verify: keep_baseline — eval/top1_median winner {entry['mean_winner']:.2f} vs "
            f"baseline {entry['mean_baseline']:.2f}: gain -1.83 points, "
            f"95% CI [{lo:+.2f}, {hi:+.2f}], 3 held-out seeds") in text
    assert "holds the BASELINE's values" in text and "winner b" in text


def test_export_adopt_writes_the_winner_and_the_interval(tmp_path):
    entry, cfg, text = verified_export(tmp_path, [1.0, 1.2, 1.1])
    assert entry["verdict"] == "adopt"
    assert cfg["optim"]["lr"] == WIN["optim.lr"]
    lo, hi = entry["ci"]
    assert (f"# verify: adopt — eval/top1_median winner {entry['mean_winner']:.2f} vs "
            f"baseline {entry['mean_baseline']:.2f}: gain +1.10 points, "
            f"95% CI [{lo:+.2f}, {hi:+.2f}], 3 held-out seeds") in text
    assert f"# train: python -m daso_ray.train {tmp_path}" in text  # the file's own path
    assert "BASELINE" not in text


def test_export_without_verify_says_not_verified(tmp_path):
    from daso_ray.export import export

    run_dir = fake_run(tmp_path, {"a": (BASE, 80.0), "b": (WIN, 84.0)})
    (rec,) = export(run_dir, tmp_path / "best")
    assert f"# not verified: python -m daso_ray.verify {run_dir}" in rec["path"].read_text()
    assert rec["verdict"] == "-"


# --- the CLI without Ray: every run finished, bad inputs ----------------------------------------


def test_cli_rebuilds_verify_json_without_training(tmp_path, capsys, monkeypatch):
    from daso_ray.ray_jobs import verify_runs
    from daso_ray.verify import main

    run_dir = fake_run(tmp_path, {"a": (BASE, 80.0), "b": (WIN, 84.0)})
    plan = v.plan(run_dir, 3)
    finish_jobs(run_dir, plan, [1.0, 1.2, 1.1])
    monkeypatch.setattr(verify_runs, "train_jobs", lambda *a, **k: pytest.fail("trained"))
    assert main([str(run_dir), "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "nothing to train" in out and "adopt" in out and out.rstrip().endswith("more seeds may decide)")
    assert v.read(run_dir)["studies"]["consistent"]["verdict"] == "adopt"


def test_cli_winner_is_baseline_trains_nothing(tmp_path, capsys):
    from daso_ray.export import export
    from daso_ray.verify import main

    run_dir = fake_run(tmp_path, {"a": (BASE, 84.0), "b": (WIN, 80.0)})
    assert main([str(run_dir)]) == 0
    e = v.read(run_dir)["studies"]["consistent"]
    assert e["verdict"] == "keep_baseline" and e["gain"] == 0 and e["winner_is_baseline"]
    assert not (run_dir / "verify").exists()
    (rec,) = export(run_dir, tmp_path / "best")
    text = rec["path"].read_text()
    assert "# verify: keep_baseline — the baseline trial won the search itself" in text
    assert yaml.safe_load(text)["optim"]["lr"] == BASE["optim.lr"]


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cli_bad_inputs(tmp_path, capsys):
    from daso_ray.verify import main

    assert main([str(tmp_path / "nope")]) == 2
    assert "nope" in (line := one_error(capsys)) and "<storage>/<name>" in line
    run_dir = fake_run(tmp_path, {})
    assert main([str(run_dir)]) == 2
    assert "no finished trial" in (line := one_error(capsys)) and "--resume" in line
    assert main([str(run_dir), "--seeds", "1"]) == 2
    assert "--seeds" in one_error(capsys)
    assert not (run_dir / "verify.json").exists()


def test_cli_refuses_a_folder_of_another_config(tmp_path, capsys):
    from daso_ray.verify import main

    run_dir = fake_run(tmp_path, {"a": (BASE, 80.0), "b": (WIN, 84.0)})
    finish_jobs(run_dir, v.plan(run_dir, 2, smoke=True), [1.0, 1.2])  # an earlier --smoke run
    assert main([str(run_dir), "--seeds", "2"]) == 2
    line = one_error(capsys)
    assert "another config" in line and "run.iterations" in line and "verify" in line
    assert not (run_dir / "verify.json").exists()


def test_a_job_resumes_from_its_newest_checkpoint(tmp_path, digits_root, capsys):
    """What each Ray task runs, called in-process: a run killed after its step-10 checkpoint
    finishes from there with the metrics of an uninterrupted run; a finished one is returned as is."""
    import dataclasses
    import shutil

    from daso_ray.config import validate
    from daso_ray.ray_jobs.verify_runs import _train

    run_dir = fake_run(tmp_path, {"a": (BASE, 80.0), "b": (WIN, 84.0)}, digits_root)
    job = v.plan(run_dir, 2, smoke=True).jobs[0]
    raw = to_dict(job.cfg)
    raw["run"].update(iterations=20, checkpoint_period=10)  # checkpoints at 10 and 20
    job = dataclasses.replace(job, cfg=validate(raw))
    out = job.dir(run_dir)
    first = _train(raw, str(out), 1.0)
    assert first["iterations"] == 20 and (out / "checkpoints" / "step_00000010").is_dir()
    assert v.state(job, run_dir) == "done"
    assert _train(raw, str(out), 1.0)["eval/top1_median"] == first["eval/top1_median"]
    (out / "results.json").unlink()  # killed after the step-10 checkpoint
    shutil.rmtree(out / "checkpoints" / "step_00000020")
    assert v.state(job, run_dir) == "resume"
    capsys.readouterr()
    again = _train(raw, str(out), 1.0)
    assert "at iteration 10" in capsys.readouterr().out
    assert again["final"]["eval/top1"] == first["final"]["eval/top1"]
    assert again["eval/top1_median"] == first["eval/top1_median"]


def test_cli_on_a_storage_uri_publishes_verify_json(tmp_path, capsys, monkeypatch):
    """A run at a URI (file:// here) is synced down into its local mirror; verify.json goes back."""
    from daso_ray.verify import main

    (tmp_path / "remote").mkdir()
    run_dir = fake_run(tmp_path / "remote", {"a": (BASE, 80.0), "b": (WIN, 84.0)})
    finish_jobs(run_dir, v.plan(run_dir, 2), [1.0, 1.2])
    monkeypatch.chdir(tmp_path)  # the mirror: ./runs/search/t
    assert main([f"file://{run_dir}", "--seeds", "2"]) == 0
    assert "nothing to train" in capsys.readouterr().out
    mirror = tmp_path / "runs" / "search" / "t"
    assert v.read(run_dir) == v.read(mirror) and v.read(run_dir)["studies"]["consistent"]["n"] == 2


@pytest.mark.ray
@pytest.mark.slow
def test_baseline_and_winner_share_one_warmup_per_seed(tmp_path, digits_root, capsys):
    """Issue 16 in verify: a pair differing only in DASO's post-P keys trains its first P
    iterations once per seed; each run equals the same run trained from step 0."""
    import ray

    from daso_ray.ray_jobs.verify_runs import _train, train_jobs

    space = {"algorithm.daso.t_proto": {"type": "float", "low": 0.02, "high": 1.0, "log": True},
             "algorithm.daso.queue_length": {"type": "int", "low": 2, "high": 16}}
    base = {"algorithm.daso.t_proto": 0.05, "algorithm.daso.queue_length": 8}
    win = {"algorithm.daso.t_proto": 0.3, "algorithm.daso.queue_length": 3}
    run_dir = fake_run(tmp_path, {"a": (base, 80.0), "b": (win, 84.0)}, digits_root,
                       params=space, set={"algorithm.daso.queue_length": 8})
    plan = v.plan(run_dir, 2, smoke=True)
    assert len(plan.jobs) == 4
    try:
        results = train_jobs(plan.jobs, run_dir, plan.spec.resources, num_cpus=2)
    finally:
        ray.shutdown()
    warm = run_dir / "verify" / "consistent" / "warmup"
    assert sorted(p.name for p in warm.iterdir()) == ["consistent__seed100", "consistent__seed101"]
    assert "2 shared warm-up(s)" in capsys.readouterr().out
    job = next(j for j in plan.jobs if j.role == "winner")
    scratch = _train(to_dict(job.cfg), str(tmp_path / "scratch"), 1.0)
    assert results[job.name]["eval/top1_median"] == scratch["eval/top1_median"]
    assert results[job.name]["history"] == scratch["history"]
