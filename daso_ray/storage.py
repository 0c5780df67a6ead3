"""Run storage that is a local directory or a URI (``s3://bucket/prefix``, ``gs://``, ``file://``).

Tune writes trial results straight to the URI from every node. The driver keeps a local mirror
(``runs/search/<name>/``) of what it reads: search.json, the results it syncs down at the end, the
leaderboard. ``export`` and ``report`` accept the URI and sync it down first. All copies go
through ``pyarrow.fs`` (the layer Ray Tune itself uses for storage).
"""

from __future__ import annotations

from pathlib import Path

from daso_ray.errors import UserError

MIRROR_ROOT = Path("runs/search")


def is_remote(location: str | Path) -> bool:
    return "://" in str(location)


def join(location: str | Path, *parts: str) -> str:
    if is_remote(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return str(Path(location, *parts))


def _fs(uri: str):
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as e:  # ArrowInvalid is a ValueError
        raise UserError(f"{uri}: cannot open this storage ({e}) — check the URI and credentials") from e


def exists(location: str | Path) -> bool:
    """True if the file or directory exists (and, for a directory, is not empty)."""
    if not is_remote(location):
        p = Path(location)
        return p.is_file() or (p.is_dir() and any(p.iterdir()))
    import pyarrow.fs as pafs

    fs, path = _fs(str(location))
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return True
    return info.type == pafs.FileType.Directory and bool(
        fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))


def upload(local: Path, uri: str) -> None:
    """Copy one local file to a URI (directories are created as needed)."""
    fs, path = _fs(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(Path(local).read_bytes())


def download(uri: str, local: Path) -> Path:
    """Mirror a remote run directory into ``local`` (remote files replace local ones)."""
    import pyarrow.fs as pafs

    fs, path = _fs(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise UserError(f"{uri}: no such run directory — pass <storage>/<name> of a search")
    local.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(local.resolve()), source_filesystem=fs,
                    destination_filesystem=pafs.LocalFileSystem())
    return local


def mirror_of(uri: str) -> Path:
    """The local mirror of a remote run: runs/search/<last path component>."""
    return (MIRROR_ROOT / str(uri).rstrip("/").rsplit("/", 1)[-1]).resolve()


def local_run_dir(location: str) -> Path:
    """A readable local run directory for a path or a URI (synced down into its mirror)."""
    if is_remote(location):
        return download(location, mirror_of(location))
    return Path(location)
