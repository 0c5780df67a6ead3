"""The reader of each dataset name: one place that knows every source (built-in arrays and image
files), so the readers themselves need not know each other."""

from __future__ import annotations

from pathlib import Path

from daso_ray.data.file_sources import load_folder_source, load_semi_aves_source
from daso_ray.data.sources import (
    Source,
    load_cifar_source,
    load_digits_source,
    load_stl10_source,
    shown,
)
from daso_ray.errors import UserError


def load_source(dataset: str, src: Path | None) -> Source:
    """Dispatch on the dataset name; ``src`` is required for everything but digits."""
    if dataset == "digits":
        return load_digits_source()
    if src is None:
        raise UserError(f"--src: the {dataset} source folder is required")
    if not src.is_dir():
        raise UserError(f"--src {shown(src)}: not a folder — pass the extracted {dataset} folder")
    loaders = {"cifar10": lambda: load_cifar_source(src, 10),
               "cifar100": lambda: load_cifar_source(src, 100),
               "stl10": lambda: load_stl10_source(src),
               "semi_aves": lambda: load_semi_aves_source(src),
               "folder": lambda: load_folder_source(src)}
    return loaders[dataset]()
