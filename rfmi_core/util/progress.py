"""Progress bars for headless runs (tqdm); inside ComfyUI the nodes use ComfyUI's ProgressBar instead."""

from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], enabled: bool = True, **kwargs) -> Iterable[T]:
    """``items`` wrapped in a tqdm bar when ``enabled`` (and tqdm is installed), else unchanged."""
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the dependencies
        return items
    return tqdm(items, **kwargs)
