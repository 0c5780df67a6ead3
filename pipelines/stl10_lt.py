"""STL10-LT end to end: prepare -> search -> export -> final multi-seed training -> results.

Needs the STL-10 binaries and GPUs; the unlabeled set is all 100k unlabeled images.

One machine (a local Ray cluster starts by itself)::

    python pipelines/stl10_lt.py --src ~/data/stl10_binary

Cluster (after ``ray up cluster.yaml``; final training as 4-worker DDP runs)::

    ray job submit --working-dir . -- python pipelines/stl10_lt.py --src ~/data/stl10_binary \\
        --workers 4 --gpu

A finished stage is skipped: after an interruption run the same command again (the search
resumes, final runs continue from their checkpoints). ``--smoke`` runs every stage on a tiny
budget. Outputs: runs/pipelines/stl10_lt/{smoke,full}/ (best/, final/, results.md).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daso_ray.pipeline import main  # noqa: E402

BENCHMARK = {"dataset": "stl10", "root": "data/stl10", "search": "search_spaces/stl10_lt.yaml",
             "name": "stl10_lt", "title": "STL10-LT"}

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK, __doc__))
