"""Run storage through pyarrow.fs: a file:// URI stands in for s3:// (same code path, no network)."""

from __future__ import annotations

import pytest

from daso_ray import storage
from daso_ray.errors import UserError


def test_join_and_remote():
    assert storage.join("s3://b/p/", "run", "x.json") == "s3://b/p/run/x.json"
    assert storage.join("/a/b", "run") == "/a/b/run"
    assert storage.is_remote("gs://b") and not storage.is_remote("runs/search")


def test_upload_exists_download_mirror(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    remote = (tmp_path / "bucket").as_uri() + "/daso/run1"
    assert not storage.exists(remote)
    src = tmp_path / "search.json"
    src.write_text('{"name": "run1"}')
    storage.upload(src, storage.join(remote, "search.json"))
    storage.upload(src, storage.join(remote, "consistent", "trial_a", "result.json"))
    assert storage.exists(remote) and storage.exists(storage.join(remote, "search.json"))
    local = storage.local_run_dir(remote)
    assert local == (tmp_path / "runs" / "search" / "run1").resolve()
    assert (local / "search.json").read_text() == '{"name": "run1"}'
    assert (local / "consistent" / "trial_a" / "result.json").is_file()


def test_missing_remote_run_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no such run directory"):
        storage.local_run_dir((tmp_path / "nowhere").as_uri())
    assert not (tmp_path / "runs").exists()  # nothing half-written
