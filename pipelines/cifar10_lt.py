"""CIFAR-10-LT end to end: prepare -> search -> export -> final multi-seed training -> results.

Needs the CIFAR-10 python pickles and GPUs: 5 scenarios x 32 trials of up to
60k iterations, then 250k-iteration final runs of each winner.

One machine (a local Ray cluster starts by itself)::

    python pipelines/cifar10_lt.py --src ~/data/cifar-10-batches-py

Cluster (after ``ray up cluster.yaml``; final training as 4-worker DDP runs)::

    ray job submit --working-dir . -- python pipelines/cifar10_lt.py --src ~/data/cifar-10-batches-py \\
        --workers 4 --gpu

A finished stage is skipped: after an interruption run the same command again (the search
resumes, final runs continue from their checkpoints). ``--smoke`` runs every stage on a tiny
budget. Outputs: runs/pipelines/cifar10_lt/{smoke,full}/ (best/, final/, results.md).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daso_ray.pipeline import main  # noqa: E402

BENCHMARK = {"dataset": "cifar10", "root": "data/cifar10", "search": "search_spaces/cifar10_lt.yaml",
             "name": "cifar10_lt", "title": "CIFAR-10-LT"}

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK, __doc__))
