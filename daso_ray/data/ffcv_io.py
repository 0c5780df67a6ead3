"""Write prepared data: per source split an Arrow store and a ``.beton``, plus ``manifest.json``.

Everything is written into a temporary sibling folder and moved into place at the end, so an
interrupted or failing prepare never leaves a half-written data folder (and never touches a
previous good one until the new one is complete).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from daso_ray import __version__
from daso_ray.data.sources import CHUNK_JPEG, Source, SourceSplit, decode_image, encode_jpeg
from daso_ray.data.store import CHUNK, Store, write_store
from daso_ray.errors import UserError
from daso_ray.files import atomic_write_text, sha256_file

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def ffcv_available() -> bool:
    try:
        import ffcv  # noqa: F401
    except ImportError:
        return False
    return True


def _jpeg_chunk(args: tuple[list[str], int]) -> list[bytes]:
    paths, side = args
    return [encode_jpeg(decode_image(Path(p), side)) for p in paths]


def _store_batches(split: SourceSplit, short_side: int, workers: int, desc: str):
    """Yield (labels, images) chunks; image files are decoded+resized+JPEG-encoded in a pool."""
    n = len(split)
    if split.images is not None:
        for s in tqdm(range(0, n, CHUNK), desc=desc, unit="chunk"):
            yield split.labels[s:s + CHUNK], split.images[s:s + CHUNK]
        return
    jobs = [([str(p) for p in split.paths[s:s + CHUNK_JPEG]], short_side)
            for s in range(0, n, CHUNK_JPEG)]
    with ProcessPoolExecutor(max_workers=workers) as pool, tqdm(total=n, desc=desc, unit="img") as bar:
        for s, encoded in zip(range(0, n, CHUNK_JPEG), pool.map(_jpeg_chunk, jobs), strict=True):
            bar.update(len(encoded))
            yield split.labels[s:s + CHUNK_JPEG], encoded


class _BetonItems:
    """Indexed dataset for FFCV's writer, read back from the Arrow store (already validated)."""

    def __init__(self, store: Store):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int):
        import io

        from PIL import Image

        if self.store.shape:
            image = self.store.pixels(np.array([i]))[0]
        else:
            with Image.open(io.BytesIO(self.store.jpeg(i))) as im:
                image = np.asarray(im.convert("RGB"))
        return image, int(self.store.labels[i]), int(i)


def write_beton(path: Path, store: Store, workers: int) -> None:
    """``.beton`` with fields image (raw uint8, or JPEG q90 for image files), label, index."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    mode = "raw" if store.shape else "jpg"
    fields = {"image": RGBImageField(write_mode=mode, jpeg_quality=90), "label": IntField(),
              "index": IntField()}
    DatasetWriter(str(path), fields, num_workers=max(1, workers)).from_indexed_dataset(
        _BetonItems(store), chunksize=256)


def prepare_source(source: Source, out: Path, *, short_side: int = 224, workers: int = 2,
                   with_ffcv: bool | None = None, force: bool = False,
                   finish: Callable[[Path, dict], object] | None = None) -> dict:
    """Write every split of ``source`` under ``out`` atomically; return the manifest dict.

    ``finish(folder, manifest)`` completes the folder (prepare's split records) *before* it is
    moved into place: whatever it raises, nothing is published and a previous ``out`` is kept.
    """
    with_ffcv = ffcv_available() if with_ffcv is None else with_ffcv
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: a file, not a folder — choose another --out")
    if out.exists() and not force:
        what = "a prepared data folder" if (out / MANIFEST).is_file() else "not empty"
        if what != "not empty" or any(out.iterdir()):
            raise UserError(f"--out {out}: {what}; pass --force to replace it or choose another --out")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        manifest = _write_all(source, tmp, short_side, workers, with_ffcv)
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1))
        if finish is not None:
            finish(tmp, manifest)
        _swap_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _write_all(source: Source, tmp: Path, short_side: int, workers: int, with_ffcv: bool) -> dict:
    splits, digests = {}, {}
    for name, split in source.splits.items():
        shape = split.images.shape[1:3] if split.images is not None else None
        write_store(tmp / f"{name}.arrow",
                    _store_batches(split, short_side, workers, f"{source.dataset}/{name}"), shape)
        files = [f"{name}.arrow"]
        if with_ffcv:
            write_beton(tmp / f"{name}.beton", Store(tmp / f"{name}.arrow"), workers)
            files.append(f"{name}.beton")
        digests.update({f: sha256_file(tmp / f) for f in files})
        labels = split.labels
        splits[name] = {
            "count": len(split), "files": files,
            "class_counts": np.bincount(labels[labels >= 0], minlength=source.num_classes).tolist(),
            "unknown_labels": int((labels < 0).sum()),
        }
    return {
        "format": FORMAT_VERSION, "dataset": source.dataset, "num_classes": source.num_classes,
        "class_names": source.class_names, "mode": source.mode,
        "image_shape": list(source.splits["train"].images.shape[1:3]) if source.mode == "raw"
        else None, "short_side": short_side if source.mode == "jpeg" else None,
        "splits": splits, "sha256": digests, "extra": source.extra,
        "checksum": hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "daso_ray_version": __version__,
    }


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def read_manifest(root: Path, verify: bool = False) -> dict:
    """Load ``root/manifest.json``; with ``verify`` re-hash every data file against it."""
    path = root / MANIFEST
    if not path.is_file():
        raise UserError(f"missing {path} — run: python -m daso_ray.prepare <dataset> --out {root}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"corrupt {path} — re-run python -m daso_ray.prepare") from None
    for name, digest in manifest.get("sha256", {}).items():
        f = root / name
        if not f.is_file():
            raise UserError(f"missing prepared file {f} — re-run python -m daso_ray.prepare")
        if verify and sha256_file(f) != digest:
            raise UserError(f"checksum mismatch for {f} (manifest {path}) — the file changed or is "
                            "truncated; re-run python -m daso_ray.prepare --force")
    return manifest
