"""Atomic writes (sksparseft/atomic.py): a failed write leaves what was there, and no temporary file or folder."""

import errno
import os
import shutil
import stat
from pathlib import Path

import pytest

from sksparseft import atomic
from sksparseft.atomic import atomic_dir, atomic_write


def _write_text(text):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    return write


def _half_then_fail(exc):
    """A writer that has written part of the new content when it fails."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("half of the new")
        raise exc

    return write


def test_atomic_write_writes_creates_parents_and_leaves_only_the_file(tmp_path):
    path = tmp_path / "sub" / "dir" / "model.bin"
    assert atomic_write(path, _write_text("new")) == path
    assert path.read_text() == "new"
    assert os.listdir(path.parent) == ["model.bin"]
    # Over an existing file: replaced whole.
    atomic_write(str(path), _write_text("newer"))
    assert path.read_text() == "newer" and os.listdir(path.parent) == ["model.bin"]


def test_atomic_write_fsyncs_the_temporary_file_before_the_rename(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(path.exists())  # not yet renamed when it is flushed
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic_write(path, _write_text("x"))
    assert synced == [False]


def test_a_failing_write_keeps_the_old_content_and_removes_the_temporary_file(tmp_path):
    path = tmp_path / "model.bin"
    path.write_text("old")
    with pytest.raises(ValueError, match="writer broke"):
        atomic_write(path, _half_then_fail(ValueError("writer broke")))
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.bin"]
    # With nothing there before, nothing is there after.
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "other.bin", _half_then_fail(KeyboardInterrupt()))
    assert os.listdir(tmp_path) == ["model.bin"]


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("PytorchStreamWriter failed writing file data/0: No space left on device"),
])
def test_a_full_disk_is_reported_as_enospc_naming_the_path(tmp_path, exc):
    path = tmp_path / "model.bin"
    path.write_text("old")
    with pytest.raises(OSError) as info:
        atomic_write(path, _half_then_fail(exc))
    assert info.value.errno == errno.ENOSPC
    assert str(path) in str(info.value) and "unchanged" in str(info.value)
    assert info.value.__cause__ is exc
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["model.bin"]


def test_a_silent_failure_on_a_nearly_full_disk_counts_as_full(tmp_path, monkeypatch):
    path = tmp_path / "model.bin"
    # A writer failing without errno or message: the free space decides.
    with pytest.raises(RuntimeError, match="^$"):
        atomic_write(path, _half_then_fail(RuntimeError()))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda folder: usage._replace(free=1000))
    with pytest.raises(OSError) as info:
        atomic_write(path, _half_then_fail(RuntimeError()))
    assert info.value.errno == errno.ENOSPC
    assert not os.listdir(tmp_path)


def test_atomic_dir_builds_the_folder_and_leaves_no_temporary_folder(tmp_path):
    def write(tmp):
        (tmp / "a.txt").write_text("a")
        (tmp / "nested").mkdir()
        (tmp / "nested" / "b.txt").write_text("b")

    path = tmp_path / "parent" / "export"
    assert atomic_dir(path, write) == path
    assert (path / "a.txt").read_text() == "a" and (path / "nested" / "b.txt").read_text() == "b"
    assert os.listdir(path.parent) == ["export"]


def test_atomic_dir_keeps_an_existing_folder_unless_replace(tmp_path):
    path = tmp_path / "export"
    path.mkdir()
    (path / "old.txt").write_text("old")

    def write(tmp):
        (tmp / "new.txt").write_text("new")

    # Another writer finished first: its folder stays, the new one is discarded.
    atomic_dir(path, write)
    assert sorted(os.listdir(path)) == ["old.txt"]
    assert os.listdir(tmp_path) == ["export"]
    # replace=True: the new folder, whole, and nothing of the old one.
    atomic_dir(path, write, replace=True)
    assert sorted(os.listdir(path)) == ["new.txt"]
    assert os.listdir(tmp_path) == ["export"]


@pytest.mark.parametrize("replace", [False, True])
def test_atomic_dir_failing_write_leaves_what_was_there(tmp_path, replace):
    def write(tmp):
        (tmp / "partial.txt").write_text("half")
        raise ValueError("writer broke")

    fresh = tmp_path / "fresh"
    with pytest.raises(ValueError, match="writer broke"):
        atomic_dir(fresh, write, replace=replace)
    assert not fresh.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "old.txt").write_text("old")
    with pytest.raises(ValueError, match="writer broke"):
        atomic_dir(existing, write, replace=replace)
    assert os.listdir(existing) == ["old.txt"]
    assert os.listdir(tmp_path) == ["existing"]


def test_atomic_dir_replace_keeps_the_old_folder_when_the_new_one_cannot_go_in(tmp_path, monkeypatch):
    path = tmp_path / "export"
    path.mkdir()
    (path / "old.txt").write_text("old")
    rename = os.rename

    def failing_rename(src, dst):
        if Path(dst) == path and Path(src).name.startswith(".export-") and "-old-" not in Path(src).name:
            raise OSError(errno.EIO, "rename failed")  # the new folder's rename, after the old one moved aside
        return rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", failing_rename)
    with pytest.raises(OSError, match="rename failed"):
        atomic_dir(path, lambda tmp: (tmp / "new.txt").write_text("new"), replace=True)
    assert os.listdir(path) == ["old.txt"] and (path / "old.txt").read_text() == "old"
    assert os.listdir(tmp_path) == ["export"]


def test_atomic_dir_replace_removes_the_old_folder_only_once_the_new_one_is_in(tmp_path, monkeypatch):
    path = tmp_path / "export"
    path.mkdir()
    (path / "old.txt").write_text("old")
    seen = []
    rmtree = shutil.rmtree

    def watching_rmtree(target, *args, **kwargs):
        seen.append((Path(target).name, sorted(os.listdir(path)) if path.exists() else None))
        return rmtree(target, *args, **kwargs)

    monkeypatch.setattr(atomic.shutil, "rmtree", watching_rmtree)
    atomic_dir(path, lambda tmp: (tmp / "new.txt").write_text("new"), replace=True)
    removed_old = [listing for name, listing in seen if "-old-" in name]
    assert removed_old == [["new.txt"]]  # the old folder went once, with the new one already at path
    assert os.listdir(tmp_path) == ["export"]


def test_atomic_dir_full_disk_is_enospc_and_cleans_up(tmp_path):
    def write(tmp):
        (tmp / "partial.txt").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        atomic_dir(tmp_path / "export", write)
    assert info.value.errno == errno.ENOSPC and "export" in str(info.value)
    assert not os.listdir(tmp_path)


# -- permissions: what a plain open() / os.mkdir() would give ------------------------------
def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=["proc", "umask call"])
def umask_source(request, monkeypatch):
    """Both ways the umask is read: /proc/self/status, and os.umask where /proc is not there."""
    if request.param == "umask call":
        monkeypatch.setattr(atomic, "_STATUS", "/nonexistent/status")
    elif not os.path.exists(atomic._STATUS):
        pytest.skip("no /proc/self/status here")
    return request.param


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o027, 0o002], ids=oct)
def test_new_files_and_folders_get_the_modes_open_and_mkdir_would_give(tmp_path, umask, umask_source):
    old = os.umask(umask)
    try:
        plain_file, plain_dir = tmp_path / "plain.txt", tmp_path / "plain"
        plain_file.write_text("x")
        plain_dir.mkdir()
        path = atomic_write(tmp_path / "model.bin", _write_text("new"))
        folder = atomic_dir(tmp_path / "export", lambda tmp: (tmp / "a.txt").write_text("a"))
        assert os.umask(umask) == umask  # reading it left it as it was
    finally:
        os.umask(old)
    assert _mode(path) == 0o666 & ~umask == _mode(plain_file)
    assert _mode(folder) == 0o777 & ~umask == _mode(plain_dir)
    assert _mode(folder / "a.txt") == 0o666 & ~umask


@pytest.mark.parametrize("existing_mode", [0o604, 0o640, 0o600], ids=oct)
def test_writing_over_a_file_keeps_its_mode(tmp_path, existing_mode):
    path = tmp_path / "model.bin"
    path.write_text("old")
    os.chmod(path, existing_mode)
    old = os.umask(0o022)
    try:
        atomic_write(path, _write_text("new"))
    finally:
        os.umask(old)
    assert path.read_text() == "new"
    assert _mode(path) == existing_mode
