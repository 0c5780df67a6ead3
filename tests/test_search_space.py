"""Search files without Ray: validation lines, define-by-run space, composition, aggregation."""

from __future__ import annotations

import optuna
import pytest
import yaml

from daso_ray.search import main as search_main
from daso_ray.study.compose import baseline_params, compose
from daso_ray.study.load import load_search, smoke
from daso_ray.study.objective import aggregate
from daso_ray.study.space import SuggestSpace, make_sampler, study_seed
from tests.search_helpers import search_dict, write_base, write_search

BROKEN = [
    ("unknown top-level key", {"budgett": {"num_samples": 2}}, "unknown key 'budgett'"),
    ("mistyped param path", {"params": {"algorithm.daso.t_protox": {"type": "float", "low": 0.1,
                                                                     "high": 1}}},
     "params.algorithm.daso.t_protox: not a config key — did you mean 'algorithm.daso.t_proto'?"),
    ("empty scenario list", {"scenarios": []}, "scenarios"),
    ("inverted range", {"params": {"optim.lr": {"type": "float", "low": 0.3, "high": 0.01}}},
     "params.optim.lr.low: 0.3 >= high: 0.01"),
    ("log domain at zero", {"params": {"optim.lr": {"type": "float", "low": 0, "high": 1, "log": True}}},
     "log domain needs low > 0"),
    ("empty choice", {"params": {"algorithm.daso.dist_update_period": {"type": "choice", "values": []}}},
     "params.algorithm.daso.dist_update_period.values"),
    ("gamma below 1", {"scenarios": [{"name": "a", "n1": 5, "gamma_l": 0.5}]}, "scenarios.0.gamma_l"),
    ("wrong algorithm", {"algorithm": "fixmatch"}, "algorithm: 'fixmatch' but base.yaml"),
    ("param of another algorithm", {"params": {"algorithm.semi.alpha": {"type": "float", "low": 0.1,
                                                                         "high": 0.5}}},
     "params.algorithm.semi.alpha: searches semi but the algorithm is 'daso'"),
    ("when on unknown param", {"params": {"algorithm.daso.interp_alpha": {
        "type": "float", "low": 0.1, "high": 0.9, "when": {"algorithm.daso.dist_aware": False}}}},
     "params.algorithm.daso.interp_alpha.when"),
    ("asha grace beyond budget", {"budget": {"num_samples": 2, "iterations": 60,
                                             "asha": {"grace": 60}}}, "budget.asha.grace"),
    ("valid metric without hold-out", {"set": {"data.num_valid": 0}}, "objective.metric"),
    ("test-set objective", {"objective": {"metric": "eval/top1_median", "min_resolution": 2}},
     "objective.metric: 'eval/top1_median' is the test set, on which verify judges the winner"),
    ("asha grace within the steps every trial shares",
     {"params": {"algorithm.daso.t_proto": {"type": "float", "low": 0.02, "high": 1, "log": True}},
      "budget": {"num_samples": 2, "iterations": 60, "asha": {"grace": 20}}},
     "budget.asha.grace: 20 <= 20: the study searches only keys read after iteration 20"),
    ("paper's median name with another window",
     {"objective": {"metric": "valid/top1_median20", "min_resolution": 2}},
     "objective.metric: 'valid/top1_median20' is the paper's median of the last 20 evaluations, "
     "but run.median_last is 2 — use 'valid/top1_median'"),
    ("fewer than 2 validation images per class", {"set": {"data.num_valid": 10}},
     "data.num_valid: 10 images for 10 classes (< 2 per class)"),
    ("validation step coarser than min_resolution",
     {"objective": {"metric": "valid/top1", "min_resolution": 0.5}},
     "one validation image moves 'valid/top1' by 2 points"),
    ("base value not among the choices",
     {"params": {"algorithm.daso.dist_update_period": {"type": "choice", "values": [5, 15]}}},
     "params.algorithm.daso.dist_update_period.values: the base config's value 10 is not listed"),
    ("base value outside the range",
     {"params": {"algorithm.daso.t_proto": {"type": "float", "low": 0.1, "high": 1.0}}},
     "params.algorithm.daso.t_proto: the base config's value 0.05 lies outside [0.1, 1.0]"),
    ("searched parameter null in the base",
     {"params": {"algorithm.daso.t_dist": {"type": "float", "low": 0.1, "high": 2.0}}},
     "params.algorithm.daso.t_dist: the base config leaves it null"),
    ("ddp with several seeds", {"resources": {"mode": "ddp"},
                                "budget": {"num_samples": 2, "seeds": 2, "iterations": 60}},
     "budget.seeds: 2 but a ddp trial trains one seed"),
]


@pytest.mark.parametrize("case,over,needle", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_search_file_fails_before_ray(tmp_path, digits_root, capsys, case, over, needle):
    write_base(tmp_path, digits_root)
    storage = tmp_path / "runs"
    file = write_search(tmp_path, search_dict(storage, **over))
    assert search_main([str(file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(needle in line for line in err), err
    assert all(line.startswith("error: ") for line in err) and "Traceback" not in "\n".join(err)
    assert not storage.exists()  # nothing written, and Ray never started (no run dir)


def test_a_mistyped_required_key_is_one_line(tmp_path, digits_root, capsys):
    write_base(tmp_path, digits_root)
    spec = search_dict(tmp_path / "runs")
    spec["budget"] = {"num_sample": 4, "iterations": 60}
    assert search_main([str(write_search(tmp_path, spec))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'search.yaml'}: unknown key 'budget.num_sample' — did you "
                   "mean 'budget.num_samples'?"], err


def test_several_problems_one_line_each(tmp_path, digits_root, capsys):
    write_base(tmp_path, digits_root)
    spec = search_dict(tmp_path / "runs", scenarios=[], budgett=1)
    spec["params"]["optim.lr"]["low"] = 1.0
    assert search_main([str(write_search(tmp_path, spec))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3, err


def test_conditional_parameter_sampled_only_when_its_condition_holds(tmp_path, digits_root):
    write_base(tmp_path, digits_root)
    params = {"algorithm.daso.dist_aware": {"type": "choice", "values": [True, False]},
              "algorithm.daso.interp_alpha": {"type": "float", "low": 0.1, "high": 0.9,
                                              "when": {"algorithm.daso.dist_aware": False}}}
    spec, _ = load_search(write_search(tmp_path, search_dict(tmp_path / "r", params=params)))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: SuggestSpace(spec)(t) or 0.0, n_trials=30)
    for t in study.trials:
        assert ("algorithm.daso.interp_alpha" in t.params) == (not t.params["algorithm.daso.dist_aware"])
    assert {t.params["algorithm.daso.dist_aware"] for t in study.trials} == {True, False}


def test_compose_applies_params_and_scenario(tmp_path, digits_root):
    write_base(tmp_path, digits_root)
    spec_d = search_dict(tmp_path / "r", scenarios=[
        {"name": "u", "unlabeled": "uniform", "n1": 15, "m1": 40, "gamma_l": 5},
        {"name": "r", "unlabeled": "reversed", "n1": 15, "m1": 40, "gamma_l": 5, "gamma_u": 4}])
    spec, base = load_search(write_search(tmp_path, spec_d))
    cfg_u = compose(spec, base, {"optim.lr": 0.01}, spec.scenarios[0], seed=2)
    assert (cfg_u.optim.lr, cfg_u.data.scenario, cfg_u.data.imb_ratio_u) == (0.01, "uniform", 1.0)
    assert (cfg_u.data.n_max_l, cfg_u.data.n_max_u, cfg_u.run.seed, cfg_u.data.seed_split) == (15, 40, 2, 2)
    cfg_r = compose(spec, base, {}, spec.scenarios[1], seed=0, iterations=7)
    assert (cfg_r.data.scenario, cfg_r.data.imb_ratio_u, cfg_r.run.iterations) == ("reversed", 4.0, 7)


def test_smoke_shrinks_every_iteration_count_consistently(tmp_path, digits_root):
    base_path = write_base(tmp_path, digits_root)
    raw = yaml.safe_load(base_path.read_text())
    raw["run"].update(iterations=800, eval_period=100, checkpoint_period=200)
    raw["algorithm"]["daso"].update(pretrain_iters=200, dist_update_period=50)
    base_path.write_text(yaml.safe_dump(raw))
    params = {"algorithm.daso.dist_update_period": {"type": "choice", "values": [10, 50, 100]}}
    spec, base = load_search(write_search(tmp_path, search_dict(
        tmp_path / "r", params=params, budget={"num_samples": 10, "iterations": 800,
                                               "asha": {"grace": 300}})))
    small, small_base = smoke(spec, base)
    assert small.budget.num_samples == 4 and small.budget.iterations <= 40
    p = small_base.algorithm.daso.pretrain_iters
    assert max(small.params["algorithm.daso.dist_update_period"].values) <= p < small.budget.iterations
    assert small.budget.iterations % small_base.run.eval_period == 0
    assert p < small.budget.asha.grace < small.budget.iterations  # no rung before P: ties only



def test_robust_objective_is_mean_or_worst_over_scenarios(tmp_path, digits_root):
    write_base(tmp_path, digits_root)
    spec, _ = load_search(write_search(tmp_path, search_dict(tmp_path / "r")))
    runs = {("a", 0): {"valid/top1_median": 80.0}, ("a", 1): {"valid/top1_median": 70.0},
            ("b", 0): {"valid/top1_median": 50.0}, ("b", 1): {"valid/top1_median": 56.0}}
    mean = aggregate(spec.objective, runs, step=10)
    assert mean["a/valid/top1_median"] == 75.0 and mean["objective"] == 64.0 and mean["step"] == 10
    # s.e. over seeds: a: 5.0, b: 3.0 -> mean of two scenarios: sqrt(25 + 9) / 2
    assert mean["objective_stderr"] == pytest.approx(34 ** 0.5 / 2)
    worst = aggregate(spec.objective.model_copy(update={"aggregate": "worst"}), runs, step=10)
    assert (worst["objective"], worst["objective_stderr"]) == (53.0, pytest.approx(3.0))
    one_seed = aggregate(spec.objective, {("a", 0): {"valid/top1_median": 80.0}}, step=10)
    assert one_seed["objective"] == 80.0 and one_seed["objective_stderr"] != one_seed["objective_stderr"]


def test_baseline_params_are_the_base_configs_values(tmp_path, digits_root):
    write_base(tmp_path, digits_root)
    params = {"algorithm.daso.t_proto": {"type": "float", "low": 0.01, "high": 1.0},
              "algorithm.daso.dist_aware": {"type": "choice", "values": [True, False]},
              "algorithm.daso.interp_alpha": {"type": "float", "low": 0.1, "high": 0.9,
                                              "when": {"algorithm.daso.dist_aware": False}}}
    spec, base = load_search(write_search(tmp_path, search_dict(tmp_path / "r", params=params)))
    # t_proto is not in the base file: its value comes from the config defaults; interp_alpha is
    # left out because its condition (dist_aware false) does not hold for the base.
    assert baseline_params(spec, base) == {"algorithm.daso.t_proto": base.algorithm.daso.t_proto,
                                           "algorithm.daso.dist_aware": True}


def test_each_study_samples_its_own_points_unless_shared(tmp_path, digits_root):
    write_base(tmp_path, digits_root)
    spec, _ = load_search(write_search(tmp_path, search_dict(tmp_path / "r")))

    def first_points(spec, study):
        st = optuna.create_study(sampler=make_sampler(spec, study), direction="maximize")
        st.optimize(lambda t: SuggestSpace(spec)(t) or 0.0, n_trials=3)
        return [t.params for t in st.trials]

    assert study_seed(spec, "a") != study_seed(spec, "b")
    assert first_points(spec, "a") != first_points(spec, "b")
    shared = spec.model_copy(update={"shared_samples": True})
    assert first_points(shared, "a") == first_points(shared, "b")
    sampler = make_sampler(spec.model_copy(update={"budget": spec.budget.model_copy(
        update={"num_samples": 40})}), "a")
    assert sampler._n_startup_trials == 10  # max(3, 40 // 4), not Optuna's fixed 10 by accident
    assert make_sampler(spec, "a")._n_startup_trials == 3


@pytest.mark.parametrize("name", ["digits_lt", "cifar10_lt", "cifar100_lt", "stl10_lt", "semi_aves"])
def test_shipped_search_spaces_validate(name):
    from tests.search_helpers import REPO

    spec, base = load_search(REPO / "search_spaces" / f"{name}.yaml")
    assert spec.name == name and base.algorithm.name == "daso"
    if name == "semi_aves":
        assert spec.resources.mode == "ddp" and {s.unlabeled_pool for s in spec.scenarios} == {"in", "in+out"}


def test_grid_sampler_needs_the_whole_grid(tmp_path, digits_root, capsys):
    write_base(tmp_path, digits_root)
    params = {"algorithm.daso.t_proto": {"type": "choice", "values": [0.05, 0.2]}}
    spec = search_dict(tmp_path / "r", params=params, sampler="grid")
    assert search_main([str(write_search(tmp_path, spec))]) == 2
    assert "budget.num_samples: 4 but the grid has 2 points — set 3" in capsys.readouterr().err


def test_grid_with_the_baseline_first_visits_every_grid_point(tmp_path, digits_root):
    """num_samples = grid + 1: the enqueued baseline, then every grid point once."""
    write_base(tmp_path, digits_root)
    params = {"algorithm.daso.t_proto": {"type": "choice", "values": [0.05, 0.2, 0.4]},
              "optim.lr": {"type": "choice", "values": [0.03, 0.1]}}
    spec, base = load_search(write_search(tmp_path, search_dict(
        tmp_path / "r", params=params, sampler="grid", budget={"num_samples": 7, "iterations": 60})))
    study = optuna.create_study(sampler=make_sampler(spec, "consistent"), direction="maximize")
    study.enqueue_trial(baseline_params(spec, base))
    study.optimize(lambda t: SuggestSpace(spec)(t) or 0.0, n_trials=spec.budget.num_samples)
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert points[0] == tuple(sorted(baseline_params(spec, base).items()))
    assert len(set(points[1:])) == 6  # every grid point, none twice


def test_aggregate_gives_tensorboard_one_scalar_per_class_by_iteration(tmp_path, digits_root):
    """Tune's TensorBoard logger plots against ``timesteps_total`` (the iteration, not the report
    count), logs numbers as scalars, turns lists into histograms and skips tuples: per-class
    recall goes as one scalar per class, the lists (for result.json and the report) as tuples."""
    write_base(tmp_path, digits_root)
    spec, _ = load_search(write_search(tmp_path, search_dict(tmp_path / "r")))
    runs = {("a", s): {"valid/top1_median": 50.0, "eval/per_class_recall": [100.0, 50.0 + s],
                       "eval/confusion": [[3, 0], [1, 2]]} for s in (0, 1)}
    out = aggregate(spec.objective, runs, step=40)
    assert out["timesteps_total"] == 40
    assert (out["a/eval/recall/class_0"], out["a/eval/recall/class_1"]) == (100.0, 50.5)
    assert out["a/eval/per_class_recall"] == (100.0, 50.5)
    assert out["a/eval/confusion"] == ((6, 0), (2, 4))
    assert not any(isinstance(v, list) for v in out.values())
