"""Prompt lists and safe paths for user-given names."""

from __future__ import annotations

import os

__all__ = ["parse_prompt_lines", "resolve_inside"]


def parse_prompt_lines(text: str) -> list[str]:
    """One prompt a line; surrounding whitespace trimmed; blank lines and lines starting with '#' skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def resolve_inside(root: str, name: str) -> str:
    """The absolute path of ``name`` under ``root``; refuses a name that would leave ``root`` (.., absolute, links)."""
    if not name or "\x00" in name:
        raise ValueError(f"name must be a non-empty relative path inside {root!r}; got {name!r}")
    root_real = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root_real, name))
    if os.path.commonpath([root_real, path]) != root_real or path == root_real:
        raise ValueError(f"{name!r} would leave the folder {root!r}: give a name inside it (no '..', no absolute path)")
    return path
