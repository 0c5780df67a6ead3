"""Builders for the search tests: a tiny base config and search file on the prepared digits data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_base(dir_: Path, root: Path, algorithm: str = "daso") -> Path:
    base = {
        "data": {"dataset": "digits", "root": str(root), "loader": "torch", "n_max_l": 20,
                 "n_max_u": 60, "imb_ratio_l": 5, "imb_ratio_u": 5, "num_valid": 50,
                 "batch_size": 8, "mu": 2, "num_workers": 1, "image_size": 16},
        "model": {"arch": "wrn10_1", "ema_decay": 0.9},
        "algorithm": {"name": algorithm, "daso": {"pretrain_iters": 20, "dist_update_period": 10}},
        "run": {"iterations": 60, "eval_period": 10, "checkpoint_period": 20, "median_last": 2,
                "device": "cpu", "out_dir": str(dir_ / "train_out")},
    }
    path = dir_ / "base.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def search_dict(storage: Path, **over) -> dict:
    spec = {
        "name": "t",
        "base": "base.yaml",
        "algorithm": "daso",
        "params": {"optim.lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
                   "algorithm.daso.t_proto": {"type": "float", "low": 0.02, "high": 1.0, "log": True}},
        "scenarios": [{"name": "consistent", "unlabeled": "consistent", "n1": 20, "m1": 60,
                       "gamma_l": 5, "gamma_u": 5}],
        # 50 validation images: 2-point steps; tiny test searches accept that coarseness
        "objective": {"type": "per_scenario", "metric": "valid/top1_median", "min_resolution": 2},
        "budget": {"num_samples": 4, "max_concurrent": 2, "iterations": 60},
        "resources": {"mode": "single", "cpu": 1},
        "storage": str(storage),
        "sampler_seed": 0,
    }
    for key, value in over.items():
        spec[key] = value
    return spec


def write_search(dir_: Path, spec: dict) -> Path:
    path = dir_ / "search.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def search_cmd(file: Path, address: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "daso_ray.search", str(file), "--address", address, *extra]


def run_env() -> dict:
    return {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": str(REPO)}


def _ray(*args: str, env: dict) -> None:
    subprocess.run([str(Path(sys.executable).parent / "ray"), *args], env=env, check=True,
                   capture_output=True, timeout=180)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(tmp: Path) -> str:
    """Head (2 CPUs, dashboard on 127.0.0.1) + one more raylet (2 CPUs): two simulated nodes."""
    import secrets
    import tempfile

    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)  # inherited by every process the tests start
    env = run_env()
    port = _free_port()
    short = lambda p: tempfile.mkdtemp(prefix=p, dir="/tmp")  # noqa: E731 (socket paths are short)
    _ray("start", "--head", "--port", str(port), "--num-cpus", "2", "--dashboard-host", "127.0.0.1",
         "--dashboard-port", str(_free_port()), "--include-dashboard", "true",
         "--disable-usage-stats", "--temp-dir", short("rh"), env=env)
    _ray("start", "--address", f"127.0.0.1:{port}", "--num-cpus", "2", "--temp-dir", short("rw"),
         env=env)
    return f"127.0.0.1:{port}"


def stop_cluster() -> None:
    _ray("stop", "--force", env=run_env())
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)


def run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=run_env(),
                          cwd=REPO)


def optuna_study(run_dir: Path, study: str):
    """An Optuna study of the run's sqlite storage."""
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / 'optuna.db'}")
    return optuna.load_study(study_name=study, storage=storage)


def complete_trials(run_dir: Path, study: str) -> list:
    """COMPLETE trials of an Optuna study in the run's sqlite storage."""
    import optuna

    return optuna_study(run_dir, study).get_trials(states=[optuna.trial.TrialState.COMPLETE])
