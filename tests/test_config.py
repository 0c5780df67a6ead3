from __future__ import annotations

import numpy as np
import pytest

from daso_ray.algorithms.daso import resolved_t_dist
from daso_ray.config import apply_overrides, from_dict, load_config, to_dict
from daso_ray.data.longtail import SplitSpec, make_split
from daso_ray.errors import UserError


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_full_path_and_suggests(tmp_path):
    p = _write(tmp_path, "algorithm:\n  daso:\n    t_prot: 0.1\n")
    with pytest.raises(UserError) as e:
        load_config(p)
    msg = str(e.value)
    assert "algorithm.daso.t_prot" in msg and "algorithm.daso.t_proto" in msg
    assert len(msg.splitlines()) == 1


def test_unknown_section_and_wrong_type_one_line_each(tmp_path):
    p = _write(tmp_path, "optimizer: {}\nrun:\n  iterations: many\n")
    with pytest.raises(UserError) as e:
        load_config(p)
    lines = str(e.value).splitlines()
    assert len(lines) == 2
    assert any("'optimizer'" in ln and "'optim'" in ln for ln in lines)
    assert any("run.iterations" in ln and "many" in ln for ln in lines)


def test_overrides_and_round_trip(tmp_path):
    p = _write(tmp_path, "data:\n  dataset: digits\n")
    cfg = load_config(p, ["algorithm.daso.t_proto=0.1", "data.scenario=reversed", "optim.milestones=[1, 2]"])
    assert cfg.algorithm.daso.t_proto == 0.1 and cfg.data.scenario == "reversed"
    assert cfg.optim.milestones == [1, 2]
    assert from_dict(to_dict(cfg)) == cfg
    with pytest.raises(UserError, match="algorithm.daso.t_protoo"):
        load_config(p, ["algorithm.daso.t_protoo=1"])
    with pytest.raises(UserError, match="KEY=VALUE"):
        apply_overrides({}, ["novalue"])


def test_scenario_rules_and_t_dist_table():
    with pytest.raises(UserError, match="imb_ratio_u"):
        from_dict({"data": {"scenario": "uniform", "imb_ratio_u": 100}})
    with pytest.raises(UserError, match="imb_ratio_l"):
        from_dict({"data": {"imb_ratio_l": 0.5}})
    assert resolved_t_dist(from_dict({})) == 1.5
    assert resolved_t_dist(from_dict({"data": {"scenario": "reversed"}})) == 0.3
    assert resolved_t_dist(from_dict({"data": {"dataset": "semi_aves"}})) == 0.5
    assert resolved_t_dist(from_dict({"algorithm": {"daso": {"t_dist": 2.0}}})) == 2.0
    with pytest.raises(UserError, match="pretrain_iters"):
        from_dict({"algorithm": {"daso": {"pretrain_iters": 50}}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match=r"c.yaml: line \d+ is not valid YAML"):
        load_config(_write(tmp_path, "data:\n  - [unclosed\n"))


def test_split_rejects_pool_too_small_and_empty_class():
    labels = np.repeat(np.arange(10), 100)
    with pytest.raises(UserError, match="data.n_max_l"):
        make_split(labels, SplitSpec(10, 0, 80, 40, 10, 10, "consistent", 0))
    with pytest.raises(UserError, match="0 labeled images"):
        make_split(labels, SplitSpec(10, 0, 5, 40, 100, 10, "consistent", 0))


def test_a_validator_error_names_its_key_once():
    """A section validator's message already names its key: not ``data.data.imb_ratio_u``."""
    from daso_ray.config import validate
    from daso_ray.errors import UserError

    with pytest.raises(UserError) as err:
        validate({"data": {"scenario": "uniform", "imb_ratio_u": 5}})
    assert str(err.value).startswith("config: data.imb_ratio_u: scenario 'uniform' needs")


def test_a_config_unpickled_in_a_fresh_process_keeps_its_algorithm_section(tmp_path):
    """What a Ray task receives: a pickled Config in a process that never validated one."""
    import pickle
    import subprocess
    import sys

    cfg = from_dict({"algorithm": {"name": "daso", "daso": {"queue_length": 8}}})
    (tmp_path / "cfg.pkl").write_bytes(pickle.dumps(cfg))
    code = ("import pickle, sys; from daso_ray.config import to_dict; "
            "print(to_dict(pickle.load(open(sys.argv[1], 'rb')))['algorithm']['daso']['queue_length'])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cfg.pkl")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "8", out.stderr
