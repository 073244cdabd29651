"""Cheap fingerprints of files and fine-tune sets, so a ComfyUI node re-runs when what it reads changed (its
``fingerprint_inputs``) and not otherwise."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .atomic import TMP_PREFIX

__all__ = ["file_fingerprint", "stat_fingerprint", "set_fingerprint"]


def file_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of the file's bytes (for small files, e.g. a prompt list); "missing" when there is no such file."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"


def stat_fingerprint(paths: list[str | os.PathLike]) -> str:
    """A digest of each file's name, size and modification time (for large files, or many)."""
    digest = hashlib.sha256()
    for path in map(Path, paths):
        try:
            info = path.stat()
            digest.update(f"{path.name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path.name}\0missing\n".encode())
    return digest.hexdigest()


def set_fingerprint(root: str | os.PathLike) -> str:
    """What a fine-tune set holds: its header and manifest segments (every append adds one; the latents and
    conditioning they name are written first). Training checkpoints inside the set do not change it."""
    root = Path(root)
    segments = sorted(p for p in (root / "manifest").glob("*.jsonl") if not p.name.startswith(TMP_PREFIX))
    return stat_fingerprint([root / "set.json", *segments])
