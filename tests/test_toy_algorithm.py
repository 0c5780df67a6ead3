"""An algorithm added in one file, with no edit to the package: a toy FixMatch variant declared
here (name, config section, searched iteration key), validated by the config and the search code
and trained through ``daso_ray.train``."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from pydantic import Field

from daso_ray import registry
from daso_ray.algorithms.fixmatch import FixMatch
from daso_ray.config import to_dict
from daso_ray.registry import Strict, register
from daso_ray.train import main as train_main
from tests.engine_helpers import tiny_config


class ToyConfig(Strict):
    temperature: float = Field(1.0, gt=0.0)  # T of the sharpened pseudo-label
    ramp_iters: int = Field(0, ge=0)  # counted in iterations: --smoke scales it


class Toy(FixMatch):
    """FixMatch with a temperature-sharpened target softmax(z_w / T) (MixMatch's sharpening,
    Berthelot et al., NeurIPS 2019); T = 1 is FixMatch."""

    name = "toy"
    section = ToyConfig
    scaled_keys = ("ramp_iters",)

    def pseudo_label(self, probs, parts, t):
        return torch.softmax(parts.logits_w.detach() / self.cfg.algorithm.toy.temperature, dim=1)

    def summary(self):
        return {"toy_temperature": self.cfg.algorithm.toy.temperature}


def unregister(name: str) -> None:
    """Forget the algorithm ``name`` (the package has no use for this outside tests)."""
    registry._REGISTRY.pop(name, None)


@pytest.fixture
def toy():
    # Registered for this test only: Ray workers and later tests must not see algorithm.toy.
    register(Toy)
    yield Toy
    unregister(Toy.name)


def _train(tmp_path, digits_root, name: str, *overrides: str) -> dict:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(to_dict(tiny_config(digits_root, "fixmatch", tmp_path))))
    out = tmp_path / name
    sets = [arg for item in overrides for arg in ("--set", item)]
    assert train_main([str(base), "--out", str(out), *sets]) == 0
    return json.loads((out / "results.json").read_text())


def test_toy_algorithm_trains_through_daso_ray_train(toy, digits_root, tmp_path):
    res = _train(tmp_path, digits_root, "toy", "algorithm.name=toy",
                 "algorithm.toy.temperature=0.5")
    assert res["config"]["algorithm"]["toy"] == {"temperature": 0.5, "ramp_iters": 0}
    assert res["toy_temperature"] == 0.5 and res["iterations"] == 8
    # T = 1 is FixMatch bit for bit: the hook is the only difference.
    same = _train(tmp_path, digits_root, "toy1", "algorithm.name=toy")
    fixmatch = _train(tmp_path, digits_root, "fm", "algorithm.name=fixmatch")
    drop = ("perf/img_per_s",)
    assert ({k: v for k, v in same["final"].items() if k not in drop}
            == {k: v for k, v in fixmatch["final"].items() if k not in drop})
    assert "toy" in fixmatch["config"]["algorithm"] and "toy_temperature" not in fixmatch


def test_toy_section_is_strict_and_searchable(toy, digits_root, tmp_path, capsys):
    from daso_ray.study.load import scaled_keys
    from daso_ray.study.spec import config_paths

    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(to_dict(tiny_config(digits_root, "toy", tmp_path))))
    assert train_main([str(base), "--set", "algorithm.toy.temprature=0.5"]) == 2
    assert "did you mean 'algorithm.toy.temperature'" in capsys.readouterr().err
    assert "algorithm.toy.temperature" in config_paths()
    assert "algorithm.toy.ramp_iters" in scaled_keys()


def test_unregistered_toy_leaves_the_config(toy):
    from daso_ray.config import from_dict
    from daso_ray.errors import UserError

    assert from_dict({"algorithm": {"name": "toy"}}).algorithm.toy.temperature == 1.0
    unregister(Toy.name)
    with pytest.raises(UserError, match="unknown key 'algorithm.toy'"):
        from_dict({"algorithm": {"toy": {}}})
    with pytest.raises(UserError, match="'toy' is not an algorithm"):
        from_dict({"algorithm": {"name": "toy"}})
