"""Atomic writes: a crash leaves either the old file (folder) or the complete new one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


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
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_dir(path, write, replace=False):
    """Call ``write(tmp_dir)`` on a temporary folder beside ``path``, then rename it to ``path``.

    A crash leaves no half-written folder at ``path``. If ``path`` exists when the folder is
    complete, ``replace=True`` removes it first; otherwise the existing folder is kept (another
    writer finished first) and the new one discarded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        write(tmp)
        if replace and path.exists():
            shutil.rmtree(path)
        try:
            os.rename(tmp, path)
        except OSError:
            if replace or not path.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
