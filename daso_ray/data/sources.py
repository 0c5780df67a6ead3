"""Readers for the supported sources: uint8 images and int labels, never a download.
The image-file sources (Semi-Aves, a user's folders) are in :mod:`daso_ray.data.file_sources`;
:func:`daso_ray.data.catalog.load_source` picks the reader for a dataset name.

Each reader returns a :class:`Source` whose splits are ``train`` (labeled pool), ``test`` and,
where the benchmark has a separate one, ``unlabeled``. Raw sources (digits, CIFAR, STL-10) hold
uint8 ``[N, H, W, 3]`` arrays in memory; image-file sources (Semi-Aves, folders) hold paths that
are decoded lazily, because U_out alone is 122k images. A missing or corrupt file raises a
one-line :class:`UserError` naming the file that was expected, quoted by :func:`shown`.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daso_ray.errors import UserError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)]
STL_SIDE = 96
CHUNK_JPEG = 256  # images per work item when decoding image files


@dataclass
class SourceSplit:
    """One source split. Exactly one of ``images`` (uint8 [N,H,W,3]) and ``paths`` is set."""

    labels: np.ndarray  # int64 [N]; -1 = unknown (unlabeled data)
    images: np.ndarray | None = None
    paths: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Source:
    dataset: str
    num_classes: int
    class_names: list[str]
    splits: dict[str, SourceSplit]
    extra: dict = field(default_factory=dict)  # e.g. Semi-Aves U_in size
    notes: list[str] = field(default_factory=list)  # one line each, printed by prepare (not fatal)

    @property
    def mode(self) -> str:
        return "raw" if self.splits["train"].images is not None else "jpeg"


def shown(path: Path | str) -> str:
    """A path for an error line: quoted, with invisible characters (a BOM, a zero-width space, a
    trailing blank) escaped, so the user sees what the file system was asked for."""
    return repr(str(path))


def require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UserError(f"missing source file {shown(path)} — expected {what}; check --src")
    return path


def read_text_file(path: Path) -> str:
    """A user's text file: UTF-8 with or without a byte-order mark (Windows editors write one),
    UTF-16 with its BOM; line ends LF or CRLF (``splitlines``). Anything else is one error line."""
    raw = path.read_bytes()
    try:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            return raw.decode("utf-16")
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{shown(path)}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                        f"{exc.start}) — save it as UTF-8") from None


# ---------------------------------------------------------------------------------------------
# digits (scikit-learn ships the data: no download)


def load_digits_source(test_per_class: int = 30) -> Source:
    """sklearn digits as 32x32x3 uint8 (bilinear upsampling of the 8x8 0..16 images).

    A fixed class-balanced test set of ``test_per_class`` images per class is held out with its
    own seed, so it never depends on the split seed (like an official test set).
    """
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(np.round(d.images * (255.0 / 16.0)).astype(np.float32))[:, None]
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    images = np.repeat(x.round().clamp(0, 255).to(torch.uint8).numpy().transpose(0, 2, 3, 1), 3, 3)
    labels = d.target.astype(np.int64)
    rng = np.random.RandomState(20240601)
    test = np.concatenate([rng.permutation(np.where(labels == c)[0])[:test_per_class]
                           for c in range(10)])
    train = np.setdiff1d(np.arange(len(labels)), test)
    return Source("digits", 10, [str(c) for c in range(10)], {
        "train": SourceSplit(labels[train], np.ascontiguousarray(images[train])),
        "test": SourceSplit(labels[test], np.ascontiguousarray(images[test])),
    })


# ---------------------------------------------------------------------------------------------
# CIFAR python pickles (read with a restricted unpickler: the files come from the user)


class _CifarUnpickler(pickle.Unpickler):
    """Allow only what CIFAR batches contain: dicts, lists, bytes and numpy arrays."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        if module == "_codecs":  # protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1')
            import codecs

            return codecs.encode
        return getattr(np._core.multiarray, name) if module != "numpy" else getattr(np, name)


def _read_cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    require(path, "a CIFAR python batch")
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.asarray(d[label_key], dtype=np.int64)
    except Exception as exc:  # noqa: BLE001 - any decoding problem is a corrupt file
        raise UserError(f"corrupt CIFAR batch {shown(path)} ({type(exc).__name__}) — re-extract the "
                        "python version archive") from None
    if len(data) != len(labels):
        raise UserError(f"corrupt CIFAR batch {shown(path)}: {len(data)} images but {len(labels)} labels")
    return np.ascontiguousarray(data), labels


def load_cifar_source(src: Path, num_classes: int) -> Source:
    """CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) folder."""
    if num_classes == 10:
        train_files, test_file, key = CIFAR10_FILES, "test_batch", b"labels"
    else:
        train_files, test_file, key = ["train"], "test", b"fine_labels"
    parts = [_read_cifar_batch(src / f, key) for f in train_files]
    test = _read_cifar_batch(src / test_file, key)
    train = SourceSplit(np.concatenate([p[1] for p in parts]), np.concatenate([p[0] for p in parts]))
    bad = np.where((train.labels < 0) | (train.labels >= num_classes))[0]
    if bad.size:
        raise UserError(f"{shown(src)}: label {train.labels[bad[0]]} outside 0..{num_classes - 1}; "
                        f"is this the CIFAR-{num_classes} folder?")
    name = f"cifar{num_classes}"
    return Source(name, num_classes, [str(c) for c in range(num_classes)],
                  {"train": train, "test": SourceSplit(test[1], test[0])})


# ---------------------------------------------------------------------------------------------
# STL-10 binary folder (stl10_binary)


def _read_stl_images(path: Path) -> np.ndarray:
    require(path, "an STL-10 binary image file")
    raw = np.fromfile(path, dtype=np.uint8)
    per = 3 * STL_SIDE * STL_SIDE
    if raw.size == 0 or raw.size % per:
        raise UserError(f"corrupt STL-10 file {shown(path)}: {raw.size} bytes is not a multiple of {per}")
    # Stored column-major per image: (N, C, W, H) -> (N, H, W, C).
    return np.ascontiguousarray(raw.reshape(-1, 3, STL_SIDE, STL_SIDE).transpose(0, 3, 2, 1))


def _read_stl_labels(path: Path, n: int) -> np.ndarray:
    labels = np.fromfile(require(path, "an STL-10 label file"), dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != n or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise UserError(f"corrupt STL-10 labels {shown(path)}: expected {n} labels in 1..10")
    return labels


def load_stl10_source(src: Path) -> Source:
    splits = {}
    for name, stem in (("train", "train"), ("test", "test")):
        images = _read_stl_images(src / f"{stem}_X.bin")
        splits[name] = SourceSplit(_read_stl_labels(src / f"{stem}_y.bin", len(images)), images)
    unl = _read_stl_images(src / "unlabeled_X.bin")
    splits["unlabeled"] = SourceSplit(np.full(len(unl), -1, dtype=np.int64), unl)
    names = read_text_file(src / "class_names.txt").split() if (src / "class_names.txt").is_file() else []
    return Source("stl10", 10, names if len(names) == 10 else [str(c) for c in range(10)], splits)


def decode_image(path: Path, short_side: int) -> np.ndarray:
    """Decode an image file to RGB uint8 [H, W, 3] with its shorter side resized to ``short_side``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = short_side / min(w, h)
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise UserError(f"corrupt image {shown(path)} ({exc.__class__.__name__}) — remove or "
                        "replace it") from None


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
