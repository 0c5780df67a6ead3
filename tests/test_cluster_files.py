"""cluster.yaml and cluster.local.yaml pass Ray's own autoscaler validator (``prepare_config`` +
``validate_config`` from ``ray.autoscaler._private.util``) and
keep the security promises of README "Cluster workflow"."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray")
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FILES = ["cluster.yaml", "cluster.local.yaml"]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def validated(raw: dict) -> dict:
    cfg = prepare_config(copy.deepcopy(raw))
    validate_config(cfg)
    return cfg


@pytest.mark.parametrize("name", FILES)
def test_validates_with_ray(name):
    cfg = validated(load(name))
    assert cfg["head_node_type"] in cfg["available_node_types"]


@pytest.mark.parametrize("name", FILES)
def test_validator_rejects_a_broken_copy(name):
    """The validator is not a no-op on our files: a misspelt key fails."""
    raw = load(name)
    raw["max_wrokers"] = 3
    with pytest.raises(Exception, match="max_wrokers"):
        validated(raw)


@pytest.mark.parametrize("name", FILES)
def test_security_and_install(name):
    raw = load(name)
    head = " ".join(raw["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in yaml.safe_dump(raw)
    for cmd in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]:
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd, cmd
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    setup = " ".join(raw["setup_commands"])
    assert "-c constraints.txt" in setup and "libturbojpeg0-dev" in setup
    assert "--num-cpus=0" in head and "--num-gpus=0" in head  # drivers only on the head


def test_aws_node_types():
    cfg = validated(load("cluster.yaml"))
    types = cfg["available_node_types"]
    assert types["head"]["resources"] == {"CPU": 0, "GPU": 0}
    gpu_types = [t for t in types if t != "head"]
    assert len(gpu_types) == 2
    assert all(types[t]["min_workers"] <= types[t]["max_workers"] for t in gpu_types)
    assert sum(types[t]["max_workers"] for t in gpu_types) <= cfg["max_workers"]
    for t in types.values():  # the schema wants integers; fractions go in trial requests
        assert all(isinstance(v, int) for v in t["resources"].values())


def test_local_provider_nodes():
    cfg = validated(load("cluster.local.yaml"))
    assert cfg["provider"]["type"] == "local"
    assert cfg["max_workers"] == len(cfg["provider"]["worker_ips"])
