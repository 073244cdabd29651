"""Atomic, durable file writes: LoRAs, training checkpoints, fine-tune sets and toy weights all go through here.

A file is written to a temporary name in its own folder (``TMP_PREFIX``…), flushed and fsynced, then put in place and
the folder fsynced: a crash or interrupt leaves the previous file (or none) and at most an orphan temporary file,
never a partial one. Two ways to put it in place:

- *replace* (``write_bytes_atomic``, ``save_safetensors_atomic``): ``os.replace`` over the target; the last writer
  wins, and a reader sees the old file or the new one, whole.
- *publish once* (``publish_bytes``, ``publish_safetensors``): a hard link to the target name, which fails when the
  name exists; of several writers publishing at once exactly one file lands, and every reader, the losers included,
  sees no file or that whole file. (An exclusive create followed by a write would show a concurrent reader an empty
  file between the two.) Where the file system has no hard links, the rename of *replace* is used: each writer's file
  is still whole, and the last one stays.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path
from typing import Callable

from safetensors.torch import save_file
from torch import Tensor

__all__ = ["TMP_PREFIX", "save_safetensors_atomic", "write_bytes_atomic", "write_atomically", "publish_bytes",
           "publish_safetensors"]

TMP_PREFIX = ".tmp-"
"""Temporary files start with this; readers of a folder skip them."""


def _temporary(path: Path) -> Path:
    return path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _written(path: Path, write: Callable[[Path], None]) -> Path:
    """A temporary file beside ``path`` holding what ``write(tmp)`` wrote, fsynced; removed if any of it fails."""
    tmp = _temporary(path)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _replace(path: Path, write: Callable[[Path], None]) -> Path:
    tmp = _written(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def _publish(path: Path, write: Callable[[Path], None]) -> bool:
    """Put ``write``'s file at ``path`` unless a file is there already; True when this call's file is the one there."""
    tmp = _written(path, write)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        if path.exists():
            return False
        os.replace(tmp, path)  # no hard links here: whole files still, the last writer's stays
        _fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def _safetensors_writer(tensors: dict[str, Tensor], metadata: dict[str, str] | None) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, str(tmp), metadata=metadata)

    return write


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably (its folder must exist); replaces a file there."""
    return _replace(Path(path), lambda tmp: tmp.write_bytes(data))


def write_atomically(path: str | os.PathLike, write: Callable) -> str:
    """Calls ``write(handle)`` on a binary file beside ``path`` and puts it in place atomically and durably (the
    folder is created if needed; a file there is replaced): figures, PNGs. Returns the path as given."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            write(handle)

    _replace(target, to_file)
    return str(path)


def save_safetensors_atomic(tensors: dict[str, Tensor], path: str | os.PathLike,
                            metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` (detached, contiguous CPU copies) to ``path`` as safetensors with ``metadata``, atomically and
    durably; the folder is created if needed; replaces a file there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _replace(path, _safetensors_writer(tensors, metadata))


def publish_bytes(path: str | os.PathLike, data: bytes) -> bool:
    """Write ``data`` to ``path`` once: whole, durable, and only if no file is there (of concurrent writers, one
    lands). True when this call's file is the one at ``path``. The folder must exist."""
    return _publish(Path(path), lambda tmp: tmp.write_bytes(data))


def publish_safetensors(tensors: dict[str, Tensor], path: str | os.PathLike,
                        metadata: dict[str, str] | None = None) -> bool:
    """``save_safetensors_atomic`` that writes only if no file is at ``path`` (``publish_bytes``'s guarantee)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _publish(path, _safetensors_writer(tensors, metadata))
