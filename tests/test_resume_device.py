"""Resume on a device other than the CPU (issue: resume crashed on CUDA).

``torch.load(map_location=cuda)`` moved the augmenter's generator state to the GPU and
``Generator.set_state`` then raised ``TypeError: RNG state must be a torch.ByteTensor``. On CPU the
"meta" device stands in for CUDA: a trainer whose device is not the CPU must still restore every
RNG state from a CPU byte tensor and continue exactly as if never stopped.
"""

from __future__ import annotations

import torch

from daso_ray.data.augment import Augmenter, cpu_rng_state
from daso_ray.engine import checkpoint
from daso_ray.engine.loop import Trainer
from tests.engine_helpers import same_tensors, tiny_config, train


def test_checkpoint_rng_states_load_as_cpu_bytes(digits_root, tmp_path):
    cfg = tiny_config(digits_root, "daso", tmp_path)
    train(cfg, tmp_path / "run", stop_after=4)
    state = checkpoint.load(tmp_path / "run")
    for rng in (state["rng"]["torch"], state["data"]["augmenter"]["gen"]):
        assert rng.device.type == "cpu" and rng.dtype == torch.uint8


def test_resume_with_a_non_cpu_trainer_device_is_bit_identical(digits_root, tmp_path):
    cfg = tiny_config(digits_root, "daso", tmp_path)
    full = train(cfg, tmp_path / "full")
    train(cfg, tmp_path / "half", stop_after=4)
    resumed = Trainer(cfg, tmp_path / "half")
    resumed.device = torch.device("meta")  # stands in for CUDA: a map_location that is not the CPU
    resumed.resume(tmp_path / "half")
    resumed.device = torch.device("cpu")
    resumed.fit()
    assert same_tensors(full.model.state_dict(), resumed.model.state_dict()) == []
    assert full.history == resumed.history


def test_augmenter_restores_from_any_byte_layout():
    a = Augmenter(seed=3)
    state = {"gen": a.state_dict()["gen"].to(torch.int64)}  # e.g. a state that went through a cast
    b = Augmenter(seed=0)
    b.load_state_dict(state)
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(a.strong(x), b.strong(x))
    assert cpu_rng_state(torch.zeros(3, dtype=torch.int64)).dtype == torch.uint8
