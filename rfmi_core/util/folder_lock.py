"""One writer at a time for a folder that a run owns (a training run's checkpoint folder).

``folder_lock(path)`` holds an advisory lock on ``path/.lock`` (``fcntl.flock``; ``msvcrt.locking`` on Windows) for the
duration of a ``with`` block; a second process asking for it at once gets ``FolderBusyError`` at once, naming the
holder. The operating system drops the lock when its holder exits, however it exits, so a killed run never leaves a
stale lock behind. Without the lock two runs writing ``step_<n>`` checkpoints into one folder would interleave, and a
resume would read another run's state.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["FolderBusyError", "folder_lock", "LOCK_NAME"]

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt


class FolderBusyError(ValueError):
    """Another process holds the folder's lock (a user error: the command line or node names a busy folder)."""


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


@contextmanager
def folder_lock(path: str | os.PathLike, what: str = "a run") -> Iterator[Path]:
    """Holds ``path``'s lock (the folder is created if needed) within the block; ``FolderBusyError`` when another
    process holds it. ``what`` names the holder's kind in the message ("a training run")."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            try:
                holder = lock.read_text(encoding="utf-8", errors="replace").strip() or "another process"
            except OSError:  # pragma: no cover - Windows: a locked byte cannot be read
                holder = "another process"
            raise FolderBusyError(f"{folder} is in use by {what} ({holder}); wait for it to end, or give another "
                                  "folder")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the lock
