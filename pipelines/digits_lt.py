"""Digits-LT end to end: prepare -> search -> export -> final multi-seed training -> results.

Built-in data (sklearn digits), CPU only: about 15 minutes on 2 cores.

One machine (a local Ray cluster starts by itself)::

    python pipelines/digits_lt.py

Cluster (after ``ray up cluster.yaml``; final training as 4-worker DDP runs)::

    ray job submit --working-dir . -- python pipelines/digits_lt.py \\
        --workers 4 --gpu

A finished stage is skipped: after an interruption run the same command again (the search
resumes, final runs continue from their checkpoints). ``--smoke`` runs every stage on a tiny
budget. Outputs: runs/pipelines/digits_lt/{smoke,full}/ (best/, final/, results.md).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daso_ray.pipeline import main  # noqa: E402

BENCHMARK = {"dataset": "digits", "root": "data/digits", "search": "search_spaces/digits_lt.yaml",
             "name": "digits_lt", "title": "Digits-LT"}

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK, __doc__))
