"""Can a trial ever be placed? A search file's ``resources`` against the connected cluster's nodes.

Ray never refuses a request no node can hold: a single trial stays PENDING for ever, and a ddp
trial's Ray Train worker group times out and retries without end. So the search compares, before
any trial starts, what one trial needs with the nodes' totals. Pure functions over plain dicts
(``{"CPU": 2.0, "GPU": 1.0}`` per node): no Ray here, :mod:`daso_ray.ray_jobs.cluster` feeds them.
"""

from __future__ import annotations

import json
import math

from daso_ray.study.spec import Resources

# The Tune actor that drives a ddp trial's Ray Train run (daso_ray/ray_jobs/tuner.py: _trainable).
DRIVER_CPU = 0.01
# Float slack: 2 - 0.01 is 1.99 on paper but not always in binary.
EPS = 1e-6


def _fmt(res: dict[str, float]) -> str:
    parts = [f"{v:g} {k}" for k, v in res.items() if v > 0]
    return ", ".join(parts) or "nothing"


def _fits(node: dict[str, float], need: dict[str, float]) -> int:
    """How many copies of ``need`` one node holds."""
    counts = [math.floor((node.get(k, 0.0) + EPS) / v) for k, v in need.items() if v > 0]
    return min(counts) if counts else 1_000_000


def _cluster(nodes: list[dict[str, float]]) -> str:
    """``2 nodes: 2 CPU; 2 CPU, 1 GPU`` — what the user compares their request with."""
    kinds = [_fmt({"CPU": n.get("CPU", 0.0), "GPU": n.get("GPU", 0.0)}) for n in nodes]
    shown = "; ".join(kinds[:4]) + ("; ..." if len(kinds) > 4 else "")
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}: {shown}"


def trial_need(res: Resources) -> str:
    """One trial's whole request, in words (the warning on an autoscaling cluster names it)."""
    if res.mode == "single":
        return f"{_fmt({'CPU': res.cpu, 'GPU': res.gpu})} on one node"
    worker = _fmt({"CPU": res.cpu, "GPU": res.gpu})
    total = _fmt({"CPU": res.workers * res.cpu + DRIVER_CPU, "GPU": res.workers * res.gpu})
    return (f"{res.workers} worker(s) × {worker}, each on one node, + {DRIVER_CPU} CPU for the "
            f"actor driving them = {total}")


def fit_problem(res: Resources, nodes: list[dict[str, float]]) -> str | None:
    """None when one trial fits the nodes; else one line naming the ``resources.*`` key, the
    need and what the cluster has."""
    if not nodes:
        return f"resources: the cluster has no live node — a trial needs {trial_need(res)}"
    worker = {"CPU": res.cpu, "GPU": res.gpu}
    if res.mode == "single":
        if any(_fits(n, worker) for n in nodes):
            return None
        key = _key(worker, nodes)
        hint = " (a local cluster: --num-cpus)" if key == "resources.cpu" else ""
        return (f"{key}: a trial needs {trial_need(res)}, but the cluster has {_cluster(nodes)} — "
                f"lower {key}, or add a node that has it{hint}")
    if not any(_fits(n, worker) for n in nodes):
        key = _key(worker, nodes)
        return (f"{key}: a ddp worker needs {_fmt(worker)} on one node, but the cluster has "
                f"{_cluster(nodes)} — lower {key}, or add a node that has it")
    # The driving actor takes its sliver from one node; the workers fill the rest.
    room = max(sum(_fits({**n, "CPU": n.get("CPU", 0.0) - DRIVER_CPU} if i == d else n, worker)
                   for i, n in enumerate(nodes))
               for d in range(len(nodes)) if nodes[d].get("CPU", 0.0) + EPS >= DRIVER_CPU)
    if room >= res.workers:
        return None
    return (f"resources.workers: a ddp trial needs {trial_need(res)}, but the cluster "
            f"({_cluster(nodes)}) holds {room} such worker(s) beside that actor — lower "
            "resources.workers or resources.cpu (workers × cpu + 0.01 must fit), or add nodes")


def _key(need: dict[str, float], nodes: list[dict[str, float]]) -> str:
    """The key to lower: the one resource no node has enough of (``resources`` if both fit, but
    never together on one node)."""
    for res in ("CPU", "GPU"):
        if need[res] > 0 and not any(n.get(res, 0.0) + EPS >= need[res] for n in nodes):
            return f"resources.{res.lower()}"
    return "resources"


def autoscaling(status_json: bytes | str | None) -> bool:
    """Whether the cluster may add nodes, from the autoscaler's status (the GCS key
    ``__autoscaling_status``). A cluster started without an autoscaling config runs a read-only
    autoscaler whose node types are the nodes themselves (``node_<id>``); anything else, or no
    status yet, counts as autoscaling, so a cluster that might grow is warned, never refused."""
    if not status_json:
        return True
    try:
        report = json.loads(status_json).get("autoscaler_report") or {}
    except (ValueError, AttributeError):
        return True
    types = set(report.get("active_nodes") or {}) | set(report.get("idle_nodes") or {})
    types |= set(report.get("pending_launches") or {})
    return not types or not all(t.startswith("node_") for t in types)
