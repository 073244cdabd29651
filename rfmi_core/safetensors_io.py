"""Atomic, durable file writes: LoRAs, training checkpoints, fine-tune sets and toy weights all go through here.

A file is written to a temporary name in its own folder (``TMP_PREFIX``…), flushed and fsynced, renamed over the
target with ``os.replace`` and the folder fsynced: a crash or interrupt leaves the previous file (or none) and at most
an orphan temporary file, never a partial one.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from safetensors.torch import save_file
from torch import Tensor

__all__ = ["TMP_PREFIX", "save_safetensors_atomic", "write_bytes_atomic"]

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


def _commit(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, rename it to ``path``, fsync the folder; ``tmp`` is removed if any of it fails."""
    try:
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably (its folder must exist)."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        tmp.write_bytes(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _commit(tmp, path)
    return path


def save_safetensors_atomic(tensors: dict[str, Tensor], path: str | os.PathLike,
                            metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` (detached, contiguous CPU copies) to ``path`` as safetensors with ``metadata``, atomically and
    durably; the folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, str(tmp), metadata=metadata)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _commit(tmp, path)
    return path
