"""Semi-Aves end to end: prepare -> search -> export -> final multi-seed training -> results.

Needs the Semi-Aves folder (lists + images), an ImageNet ResNet-34 state dict at
data/pretrained/resnet34-imagenet.pth and 8 GPUs: every trial is a 4-GPU DDP Ray Train run.

One machine (a local Ray cluster starts by itself)::

    python pipelines/semi_aves.py --src ~/data/semi-aves

Cluster (after ``ray up cluster.yaml``; final training as 4-worker DDP runs)::

    ray job submit --working-dir . -- python pipelines/semi_aves.py --src ~/data/semi-aves \\
        --workers 4 --gpu

A finished stage is skipped: after an interruption run the same command again (the search
resumes, final runs continue from their checkpoints). ``--smoke`` runs every stage on a tiny
budget. Outputs: runs/pipelines/semi_aves/{smoke,full}/ (best/, final/, results.md).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daso_ray.pipeline import main  # noqa: E402

BENCHMARK = {"dataset": "semi_aves", "root": "data/semi_aves", "search": "search_spaces/semi_aves.yaml",
             "name": "semi_aves", "title": "Semi-Aves"}

if __name__ == "__main__":
    raise SystemExit(main(BENCHMARK, __doc__))
