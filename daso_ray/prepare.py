"""``python -m daso_ray.prepare DATASET [--src PATH] --out DIR``: source -> .arrow/.beton + manifest.

Writes one file pair per source split (raw pixels for 32/96-px sources, JPEG for image files at
``--short-side`` px) and ``manifest.json`` with counts and sha256 checksums, all atomically, plus the
split record of the protocol's default scenarios under ``splits/``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from daso_ray.config import DATASETS, DataConfig
from daso_ray.errors import UserError, cli_entry

# Protocol defaults per dataset, used for the split records written at prepare time.
DEFAULT_DATA = {
    "digits": dict(n_max_l=30, n_max_u=100, imb_ratio_l=10, imb_ratio_u=10, num_valid=100),
    "cifar10": dict(n_max_l=1500, n_max_u=3000, imb_ratio_l=100, imb_ratio_u=100, num_valid=5000),
    "cifar100": dict(n_max_l=150, n_max_u=300, imb_ratio_l=10, imb_ratio_u=10, num_valid=5000),
    "stl10": dict(n_max_l=450, n_max_u=None, imb_ratio_l=10, imb_ratio_u=1, num_valid=500),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m daso_ray.prepare", description=__doc__.split("\n")[0])
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--src", type=Path, help="source folder (not needed for digits)")
    p.add_argument("--out", type=Path, required=True, help="output folder (data.root in configs)")
    p.add_argument("--short-side", type=int, default=224, help="JPEG sources: shorter side in px")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--no-ffcv", action="store_true", help="write only the portable .arrow files")
    p.add_argument("--force", action="store_true", help="replace an existing prepared folder")
    return p


def write_default_splits(dataset: str, out: Path, manifest: dict) -> list[Path]:
    """Record the protocol's consistent / uniform / reversed splits (seed 0) under out/splits/."""
    from daso_ray.data.module import build_split

    if dataset not in DEFAULT_DATA:
        return [build_split(DataConfig(dataset=dataset, root=str(out), num_valid=0, n_max_u=None,
                                       imb_ratio_u=1, scenario="uniform", imb_ratio_l=1),
                            manifest, out).path]
    paths = []
    for scenario in ("consistent", "uniform", "reversed"):
        kw = dict(DEFAULT_DATA[dataset])
        if scenario == "uniform" or kw["n_max_u"] is None:
            kw.update(imb_ratio_u=1, scenario="uniform")
        else:
            kw.update(scenario=scenario)
        if dataset == "stl10" and scenario != "uniform":
            continue  # STL-10's unlabeled set has an unknown distribution: one record only
        paths.append(build_split(DataConfig(dataset=dataset, root=str(out), **kw), manifest, out).path)
    return paths


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from daso_ray.data.ffcv_io import prepare_source
    from daso_ray.data.sources import load_source

    if args.short_side < 32:
        raise UserError(f"--short-side {args.short_side}: must be at least 32")
    source = load_source(args.dataset, args.src)
    manifest = prepare_source(source, args.out, short_side=args.short_side, workers=args.workers,
                              with_ffcv=False if args.no_ffcv else None, force=args.force)
    splits = write_default_splits(args.dataset, args.out, manifest)
    counts = {k: v["count"] for k, v in manifest["splits"].items()}
    print(f"prepared {args.dataset} -> {args.out}: {counts}, {len(splits)} split record(s), "
          f"checksum {manifest['checksum'][:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
