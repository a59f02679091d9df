"""Atomic writes and output-path checks (CPU only)."""

import os
import stat

import pytest

from dynamic_shapes.files import check_writable, check_writable_folder, write_atomically


def current_umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_write_atomically_writes_with_the_usual_mode_and_never_touches_the_umask(
    tmp_path, monkeypatch
):
    umask = current_umask()

    def no_umask(_mask):
        raise AssertionError("os.umask is process-wide: changing it races with other threads")

    monkeypatch.setattr(os, "umask", no_umask)
    path = tmp_path / "file.bin"
    write_atomically(path, b"engine")
    assert path.read_bytes() == b"engine"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_write_atomically_syncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    path, synced = tmp_path / "file.bin", []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), path.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_atomically(path, b"engine")
    # The file's bytes before the rename, then the folder once the new name is in it.
    assert synced == [(False, False), (True, True)]


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, OSError])
def test_interrupted_write_keeps_the_old_file_and_leaves_no_partial_one(
    tmp_path, monkeypatch, interruption
):
    path = tmp_path / "file.bin"
    write_atomically(path, b"good")

    def interrupted(fd):
        raise interruption("interrupted while the new bytes were half on disk")

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(interruption):
        write_atomically(path, b"new but never completed")
    assert path.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "new.json") == tmp_path / "new.json"
    with pytest.raises(ValueError, match="is a folder; name a file to write"):
        check_writable(tmp_path)
    with pytest.raises(ValueError, match=f"there is no folder {tmp_path / 'missing'}$"):
        check_writable(tmp_path / "missing" / "x.json")


def test_check_writable_folder(tmp_path):
    assert check_writable_folder(tmp_path) == tmp_path  # an existing folder
    assert check_writable_folder(tmp_path / "new") == tmp_path / "new"  # a new one
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file; name a folder"):
        check_writable_folder(tmp_path / "file")
    with pytest.raises(ValueError, match="there is no folder"):
        check_writable_folder(tmp_path / "missing" / "new")
