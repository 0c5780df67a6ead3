"""CIFAR-100-LT end to end: prepare -> search -> export -> final multi-seed training -> results.

Needs the CIFAR-100 python pickles and GPUs (5 scenarios, as CIFAR-10-LT).

One machine (a local Ray cluster starts by itself)::

    python pipelines/cifar100_lt.py --src ~/data/cifar-100-python

Cluster (after ``ray up cluster.yaml``; final training as 4-worker DDP runs)::

    ray job submit --working-dir . -- python pipelines/cifar100_lt.py --src ~/data/cifar-100-python \\
        --workers 4 --gpu

A finished stage is skipped: after an interruption run the same command again (the search
resumes, final runs continue from their checkpoints). ``--smoke`` runs every stage on a tiny
budget. Outputs: runs/pipelines/cifar100_lt/{smoke,full}/ (best/, final/, results.md).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daso_ray.pipeline import main  # noqa: E402

BENCHMARK = {"dataset": "cifar100", "root": "data/cifar100", "search": "search_spaces/cifar100_lt.yaml",
             "name": "cifar100_lt", "title": "CIFAR-100-LT"}

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK, __doc__))
