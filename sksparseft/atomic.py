"""Atomic writes: a crash leaves either the old file (folder) or the complete new one.

The file or folder gets the permissions a plain ``open(path, "w")`` / ``os.mkdir(path)`` would
give under the current umask (the temporary one is private until then); a file written over
an existing one keeps that file's mode, as a write in place would.

A write that fails on a full disk raises ``OSError`` (errno ENOSPC) that names the path and
says so, whatever the writing library reported; the temporary file or folder is removed.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

# Below this many free bytes a failed write is taken for a full disk: some writers (torch.save)
# report it without errno or message.
_NEARLY_FULL = 1 << 20


# Where Linux states a process's umask without changing it (Linux 4.7 and later).
_STATUS = "/proc/self/status"


def _umask():
    """The process's umask."""
    try:
        with open(_STATUS, encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Elsewhere the umask can only be read by setting it. It is process-wide: a thread creating a
    # file between these two calls gets the temporary value, so that value is the most private one.
    old = os.umask(0o077)
    os.umask(old)
    return old


def _file_mode(path):
    """The mode of the file at ``path`` if there is one, else what ``open(path, "w")`` would create."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _chmod(path, mode):
    try:
        os.chmod(path, mode)
    except OSError as exc:  # a file system without modes (some FUSE/SMB mounts): its own rule stands
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def _disk_full(exc, folder):
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc):
        return True
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL
    except OSError:
        return False


def _raise_disk_full(exc, path):
    """Re-raise ``exc`` as an OSError (ENOSPC) naming ``path`` when the disk was full."""
    if _disk_full(exc, Path(path).parent):
        raise OSError(errno.ENOSPC, f"the disk is full (no space left on device): {path} was not written and "
                                    f"what was there is unchanged ({type(exc).__name__}: {exc})") from exc


def atomic_write(path, write):
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``.

    The temporary file is flushed to disk before the rename and removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        _chmod(tmp, _file_mode(path))  # mkstemp made it 0600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as exc:
        _raise_disk_full(exc, path)
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_dir(path, write, replace=False):
    """Call ``write(tmp_dir)`` on a temporary folder beside ``path``, then rename it to ``path``.

    A crash leaves no half-written folder at ``path``. If ``path`` exists when the folder is
    complete, ``replace=True`` moves it aside, renames the new one in and only then removes the
    old one (should the rename fail, the old folder goes back); otherwise the existing folder is
    kept (another writer finished first) and the new one discarded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        try:
            write(tmp)
        except Exception as exc:
            _raise_disk_full(exc, path)
            raise
        _chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it 0700
        if replace and path.exists():
            _swap_in(tmp, path)
        else:
            try:
                os.rename(tmp, path)
            except OSError:
                if replace or not path.exists():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _swap_in(new, path):
    """Rename folder ``new`` to ``path`` over an existing folder, which is removed only once ``new`` is in.

    Between the two renames ``path`` is briefly absent, but at no moment is either folder lost: a
    crash there leaves the old one, whole, under its hidden name beside ``path``.
    """
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}-old-", dir=path.parent))
    os.rmdir(old)  # only the unique name is wanted: rename needs no folder in the way
    os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
