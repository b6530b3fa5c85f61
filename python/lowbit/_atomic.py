"""Atomic file writes: the content goes to a temporary file beside the target, which is renamed
over it only once complete, so an interrupted write never leaves a half file."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text"]


def _umask() -> int:
    from .system import proc_status_field

    value = proc_status_field("Umask")  # Linux >= 4.7 says it without changing it
    return int(value, 8) if value else 0o022


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file in ``path``'s folder, then rename it to
    ``path``; on any error (Ctrl-C included) the temporary file is removed and ``path`` is untouched.
    The file gets the mode of the one it replaces, else the umask's default (mkstemp's own is 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
