"""``python -m daso_ray.prepare DATASET [--src PATH] --out DIR``: source -> .arrow/.beton + manifest.

Writes one file pair per source split (raw pixels for 32/96-px sources, JPEG for image files at
``--short-side`` px) and ``manifest.json`` with counts and sha256 checksums, all atomically, plus the
split record of the protocol's default scenarios under ``splits/``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from daso_ray.cli import summary as command_summary
from daso_ray.config import DATASET_DEFAULTS, DATASETS, DataConfig
from daso_ray.errors import UserError, cli_entry


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m daso_ray.prepare",
                                description=command_summary("daso_ray.prepare"))
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--src", type=Path, help="source folder (not needed for digits)")
    p.add_argument("--out", type=Path, required=True, help="output folder (data.root in configs)")
    p.add_argument("--short-side", type=int, default=224, help="JPEG sources: shorter side in px")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--no-ffcv", action="store_true", help="write only the portable .arrow files")
    p.add_argument("--force", action="store_true", help="replace an existing prepared folder")
    return p


def protocol_configs(dataset: str) -> list[DataConfig]:
    """The splits prepare records (seed 0): the protocol's consistent / uniform / reversed ones
    where U is carved out of train; one where the unlabeled images are a split of their own
    (STL-10: unknown distribution; Semi-Aves, folders: the data's own)."""
    defaults = DATASET_DEFAULTS[dataset]
    if defaults["n_max_u"] is None:
        return [DataConfig(dataset=dataset)]
    return [DataConfig(dataset=dataset, scenario=scenario,
                       imb_ratio_u=1.0 if scenario == "uniform" else defaults["imb_ratio_u"])
            for scenario in ("consistent", "uniform", "reversed")]


def check_source_fits(dataset: str, source, src: Path | None) -> None:
    """Before anything is written: the recorded splits must fit the source. The split's own error
    names training keys (``data.n_max_l``) prepare has no flag for, so say it in prepare's terms."""
    from daso_ray.data.longtail import make_split, split_spec
    from daso_ray.data.sources import shown

    train, k = source.splits["train"].labels, source.num_classes
    unl = source.splits["unlabeled"].labels if "unlabeled" in source.splits else None
    for data in protocol_configs(dataset):
        try:
            make_split(train, split_spec(data, k), unl)
        except UserError:
            have = np.bincount(train[train >= 0], minlength=k)[:k]
            parts = {"N_1": data.n_max_l, "M_1": data.n_max_u if unl is None else None,
                     "validation": data.num_valid // k}
            need = max(1, sum(v for v in parts.values() if v))
            what = " + ".join(f"{name} {v}" for name, v in parts.items() if v)
            c = int(np.argmin(have))
            raise UserError(
                f"--src {shown(src)}: class {c} has {int(have[c])} labeled training images but the "
                f"{dataset} protocol split prepare records needs {need} per class ({what}) — pass "
                f"the complete {dataset} source (README: Prepare data)") from None


def write_default_splits(dataset: str, out: Path, manifest: dict) -> list[Path]:
    """Record :func:`protocol_configs` under ``out/splits/`` (``out``: the folder being written)."""
    from daso_ray.data.module import build_split
    from daso_ray.data.store import Stores

    stores = Stores(out)  # each label column read once for all the records
    return [build_split(data, manifest, stores).path for data in protocol_configs(dataset)]


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from daso_ray.data.catalog import load_source
    from daso_ray.data.ffcv_io import prepare_source

    if args.short_side < 32:
        raise UserError(f"--short-side {args.short_side}: must be at least 32")
    source = load_source(args.dataset, args.src)
    for note in source.notes:
        print(f"note: {note}", file=sys.stderr)
    check_source_fits(args.dataset, source, args.src)  # before any image is encoded
    splits: list[Path] = []
    # The records are written into the temporary folder: published together with the data or not
    # at all (a failing record never leaves a half-prepared --out behind).
    manifest = prepare_source(source, args.out, short_side=args.short_side, workers=args.workers,
                              with_ffcv=False if args.no_ffcv else None, force=args.force,
                              finish=lambda tmp, m: splits.extend(
                                  write_default_splits(args.dataset, tmp, m)))
    counts = {k: v["count"] for k, v in manifest["splits"].items()}
    print(f"prepared {args.dataset} -> {args.out}: {counts}, {len(splits)} split record(s), "
          f"checksum {manifest['checksum'][:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
