"""Joining a Ray cluster, or starting a local one that is safe by default.

- ``--address`` / ``RAY_ADDRESS`` (``auto`` inside ``ray job submit``): join that cluster. Token
  auth stays on: a cluster started with a token (the default for local clusters since Ray 2.59)
  needs ``RAY_AUTH_MODE=token`` on clients, which we set unless the user chose otherwise.
- Otherwise start a local cluster with the dashboard on 127.0.0.1. The dashboard must run: Ray
  Train's placement-group cleaner talks to its State API, which the dashboard serves; without it
  stopped trials leak placement groups and later trials hang.
- :func:`check_fit`: once connected, refuse (fixed cluster) or warn about (autoscaling cluster) a
  trial no node can hold — Ray would leave it waiting for ever.
"""

from __future__ import annotations

import os

import ray

from daso_ray.errors import UserError
from daso_ray.study.fit import autoscaling, fit_problem, trial_need
from daso_ray.study.spec import Resources

# Short evaluation windows report often; Train's default 2 s controller poll
# (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S) would bound the report latency.
# Trials keep the job's working directory (relative data paths resolve the same on every node);
# each trial writes under tune.get_context().get_trial_dir() instead.
TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
             "RAY_CHDIR_TO_TRIAL_DIR": "0"}


def connect(address: str | None = None, num_cpus: int | None = None) -> str | None:
    """``ray.init`` for a driver; returns the dashboard URL (None if the cluster has none)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table honours metric_columns
    for k, v in TRAIN_ENV.items():
        os.environ.setdefault(k, v)
    address = address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": {k: os.environ[k] for k in TRAIN_ENV}}
    if address:
        if address != "auto" and ":" in address:
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        ctx = ray.init(address=address, runtime_env=runtime_env)
    else:
        ctx = ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                       runtime_env=runtime_env)
    url = ctx.dashboard_url
    return f"http://{url}" if url and not url.startswith("http") else url


def node_resources() -> list[dict[str, float]]:
    """The CPU and GPU totals of every live node of the connected cluster."""
    return [{k: float(n["Resources"].get(k, 0.0)) for k in ("CPU", "GPU")}
            for n in ray.nodes() if n.get("Alive")]


def is_autoscaling() -> bool:
    """Whether the connected cluster may add nodes (see :func:`daso_ray.study.fit.autoscaling`)."""
    from ray.experimental.internal_kv import _internal_kv_get

    try:
        return autoscaling(_internal_kv_get("__autoscaling_status"))
    except Exception:  # noqa: BLE001 (an unreadable status: assume it may grow, warn only)
        return True


def check_fit(res: Resources, started_here: bool) -> None:
    """Pre-flight: a trial that can never be placed would wait for ever. On a fixed cluster (one
    this driver started, or one without an autoscaler) that is an error; on an autoscaling one a
    note, since the nodes it needs may still come."""
    problem = fit_problem(res, node_resources())
    if problem is None:
        return
    if started_here or not is_autoscaling():
        raise UserError(problem)
    print(f"note: {problem.split(' — ')[0]}; the cluster autoscales, so trials wait for a node "
          f"with room for {trial_need(res)}", flush=True)
