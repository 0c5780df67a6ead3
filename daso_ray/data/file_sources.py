"""Image-file sources: Semi-Aves list files and a user's folders (paths, decoded lazily).

Both come from users' machines, so the readers expect what real copies hold: list files saved by
Windows editors (a byte-order mark, CRLF) and folders touched by notebooks, Finder and zip tools
(``.ipynb_checkpoints``, ``._x.png`` resource forks, ``__MACOSX``) — none of which is data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from daso_ray.data.sources import IMAGE_EXTS, Source, SourceSplit, read_text_file, require, shown
from daso_ray.errors import UserError


def _read_list(src: Path, name: str, num_classes: int | None) -> tuple[list[Path], np.ndarray]:
    """A Semi-Aves list file: one ``relative/path.jpg label`` per line (label -1 = unknown)."""
    path = require(src / name, "a Semi-Aves list file of 'relative/path.jpg class_id' lines")
    paths, labels = [], []
    for n, line in enumerate(read_text_file(path).splitlines(), 1):
        parts = line.strip().rsplit(maxsplit=1)
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise UserError(f"{shown(path)} line {n}: expected 'relative/path.jpg class_id', "
                            f"got {line!r}")
        label = int(parts[1])
        if num_classes is not None and not -1 <= label < num_classes:
            raise UserError(f"{shown(path)} line {n}: class id {label} outside -1..{num_classes - 1}")
        paths.append(src / parts[0])
        labels.append(label)
    missing = next((n for n, p in enumerate(paths, 1) if not p.is_file()), None)
    if missing is not None:
        raise UserError(f"missing source file {shown(paths[missing - 1])} — listed in {shown(path)} "
                        f"(entry {missing}); check --src")
    return paths, np.asarray(labels, dtype=np.int64)


def load_semi_aves_source(src: Path) -> Source:
    """Semi-Aves release layout: l_train_val.txt (or l_train.txt + val.txt), u_train_in.txt,
    optional u_train_out.txt, test.txt; image paths relative to ``src``."""
    if (src / "l_train_val.txt").is_file():
        lp, ll = _read_list(src, "l_train_val.txt", None)
    else:
        a, b = _read_list(src, "l_train.txt", None), _read_list(src, "val.txt", None)
        lp, ll = a[0] + b[0], np.concatenate([a[1], b[1]])
    k = int(ll.max()) + 1
    tp, tl = _read_list(src, "test.txt", k)
    up, _ = _read_list(src, "u_train_in.txt", k)
    n_in = len(up)
    if (src / "u_train_out.txt").is_file():
        up += _read_list(src, "u_train_out.txt", None)[0]
    # Unlabeled true labels are unknown to training (no label of U may reach the loss): stored as -1.
    splits = {"train": SourceSplit(ll, paths=lp), "test": SourceSplit(tl, paths=tp),
              "unlabeled": SourceSplit(np.full(len(up), -1, dtype=np.int64), paths=up)}
    return Source("semi_aves", k, [str(c) for c in range(k)], splits, extra={"unlabeled_in_count": n_in})


def hidden(name: str) -> bool:
    """File-system entries that are never data: dot-files and dot-folders (``.ipynb_checkpoints``,
    ``.DS_Store``, macOS ``._x.png`` resource forks, ``.git``) and ``__MACOSX`` from zip archives."""
    return name.startswith(".") or name == "__MACOSX"


def _images_under(root: Path, skipped: list[Path]) -> list[Path]:
    """Image files under ``root`` at any depth, hidden entries pruned at every depth (their paths
    go to ``skipped``)."""
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        skipped += [here / d for d in dirs if hidden(d)]
        dirs[:] = sorted(d for d in dirs if not hidden(d))  # os.walk descends only into these
        for name in files:
            if Path(name).suffix.lower() not in IMAGE_EXTS:
                continue
            (skipped if hidden(name) else found).append(here / name)
    return sorted(found)


def _class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not hidden(p.name))


def load_folder_source(src: Path) -> Source:
    """User folders: ``labeled/<class>/...``, ``unlabeled/...`` (any nesting), ``test/<class>/...``.

    Hidden entries are not data at any depth (``labeled/.ipynb_checkpoints`` is no class,
    ``labeled/a/.ipynb_checkpoints/x.jpg`` no image of ``a``); what was skipped is one note.
    """
    for sub in ("labeled", "unlabeled", "test"):
        if not (src / sub).is_dir():
            raise UserError(f"missing folder {shown(src / sub)} — expected labeled/<class>/, "
                            "unlabeled/, test/<class>/ under --src")
    classes = _class_folders(src / "labeled")
    if len(classes) < 2:
        raise UserError(f"{shown(src / 'labeled')}: needs at least 2 class folders, found {len(classes)}")
    # Hidden entries beside the class folders (walks below start inside the class folders).
    splits, skipped = {}, [p for sub in ("labeled", "test") for p in (src / sub).iterdir()
                           if hidden(p.name) and (p.is_dir() or p.suffix.lower() in IMAGE_EXTS)]
    for sub in ("labeled", "test"):
        extra = sorted(set(_class_folders(src / sub)) - set(classes))
        if extra:
            raise UserError(f"{shown(src / sub / extra[0])}: class not present under labeled/")
        paths, labels = [], []
        for c, name in enumerate(classes):
            found = _images_under(src / sub / name, skipped)
            if sub == "labeled" and not found:
                raise UserError(f"{shown(src / sub / name)}: a class folder without images "
                                f"({', '.join(sorted(IMAGE_EXTS))}) — add its images or remove it")
            paths += found
            labels += [c] * len(found)
        splits["train" if sub == "labeled" else "test"] = SourceSplit(
            np.asarray(labels, dtype=np.int64), paths=paths)
    unl = _images_under(src / "unlabeled", skipped)
    splits["unlabeled"] = SourceSplit(np.full(len(unl), -1, dtype=np.int64), paths=unl)
    for name, split in splits.items():
        if len(split) == 0:
            raise UserError(f"{shown(src)}: no images found for split '{name}' ({sorted(IMAGE_EXTS)})")
    return Source("folder", len(classes), classes, splits, notes=_skip_note(src, skipped))


def _skip_note(src: Path, skipped: list[Path]) -> list[str]:
    if not skipped:
        return []
    forks = sum(p.name.startswith("._") for p in skipped)
    shown_ = ", ".join(str(p.relative_to(src)) for p in sorted(skipped)[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    why = f"; {forks} of them macOS resource forks (._*)" if forks else ""
    return [f"skipped {len(skipped)} hidden file(s)/folder(s) under {shown(src)}: {shown_}{more}"
            f"{why}"]
