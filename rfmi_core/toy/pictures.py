"""PNG pictures of the toy demo without an imaging library: a PNG writer (zlib), a 3×5 pixel font, sample grids with
captions and verdict frames, and histograms. Images are float [3, H, W] in [0, 1]."""

from __future__ import annotations

import os
import struct
import tempfile
import zlib

import torch
from torch import Tensor

__all__ = ["write_png", "text_image", "tile", "grid", "histogram_image", "stack_rows"]

_GLYPHS = {  # 3×5, rows top to bottom, '#' = ink
    "0": "###,#.#,#.#,#.#,###", "1": ".#.,##.,.#.,.#.,###", "2": "###,..#,###,#..,###", "3": "###,..#,.##,..#,###",
    "4": "#.#,#.#,###,..#,..#", "5": "###,#..,###,..#,###", "6": "###,#..,###,#.#,###", "7": "###,..#,.#.,.#.,.#.",
    "8": "###,#.#,###,#.#,###", "9": "###,#.#,###,..#,###", ".": "...,...,...,...,.#.", "-": "...,...,###,...,...",
    "+": "...,.#.,###,.#.,...", ":": "...,.#.,...,.#.,...", "%": "#.#,..#,.#.,#..,#.#", "/": "..#,..#,.#.,#..,#..",
    "(": ".#.,#..,#..,#..,.#.", ")": ".#.,..#,..#,..#,.#.", "=": "...,###,...,###,...", " ": "...,...,...,...,...",
    "a": "...,##.,.##,#.#,###", "b": "#..,##.,#.#,#.#,##.", "c": "...,.##,#..,#..,.##", "d": "..#,.##,#.#,#.#,.##",
    "e": "...,###,#.#,##.,.##", "f": ".##,#..,##.,#..,#..", "g": "...,###,#.#,.##,##.", "h": "#..,##.,#.#,#.#,#.#",
    "i": ".#.,...,.#.,.#.,.#.", "j": "..#,...,..#,#.#,.#.", "k": "#..,#.#,##.,#.#,#.#", "l": "##.,.#.,.#.,.#.,###",
    "m": "...,#.#,###,#.#,#.#", "n": "...,##.,#.#,#.#,#.#", "o": "...,.#.,#.#,#.#,.#.", "p": "...,##.,#.#,##.,#..",
    "q": "...,.##,#.#,.##,..#", "r": "...,#.#,##.,#..,#..", "s": "...,.##,##.,..#,##.", "t": "#..,###,#..,#..,.##",
    "u": "...,#.#,#.#,#.#,###", "v": "...,#.#,#.#,#.#,.#.", "w": "...,#.#,#.#,###,#.#", "x": "...,#.#,.#.,#.#,#.#",
    "y": "...,#.#,#.#,.#.,#..", "z": "...,###,.##,#..,###",
}


def _glyph(ch: str) -> Tensor:
    rows = _GLYPHS.get(ch.lower(), _GLYPHS[" "]).split(",")
    return torch.tensor([[c == "#" for c in row] for row in rows], dtype=torch.float32)


def text_image(text: str, scale: int = 1, colour: tuple[float, float, float] = (1.0, 1.0, 1.0),
               background: float = 0.0) -> Tensor:
    """The text in the 3×5 font (1-px spacing, unknown characters blank), [3, 5·scale, 4·len·scale]."""
    if not text:
        return torch.full((3, 5 * scale, scale), background)
    ink = torch.cat([torch.cat([_glyph(c), torch.zeros(5, 1)], 1) for c in text], 1)
    ink = ink.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    rgb = torch.tensor(colour)[:, None, None]
    return background + ink[None] * (rgb - background)


def tile(image: Tensor, scale: int, frame: tuple[float, float, float] | None, caption: str = "") -> Tensor:
    """A [-1, 1] image [3, h, w] upscaled ``scale``×, framed 2 px in ``frame`` colour, with a caption below."""
    big = ((image.clamp(-1, 1) + 1) / 2).repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    if frame is not None:
        pad = torch.tensor(frame)[:, None, None].expand(3, big.shape[1] + 4, big.shape[2] + 4).clone()
        pad[:, 2:-2, 2:-2] = big
        big = pad
    if caption:
        label = text_image(caption)
        strip = torch.zeros(3, 7, big.shape[2])
        width = min(label.shape[2], big.shape[2])
        strip[:, 1:6, :width] = label[:, :, :width]
        big = torch.cat([big, strip], 1)
    return big


def stack_rows(rows: list[Tensor], gap: int = 2, axis: int = 1) -> Tensor:
    """Images [3, h, w] joined along ``axis`` (1: one below the other, 2: side by side), zero-padded to fit."""
    other = 2 if axis == 1 else 1
    size = max(r.shape[other] for r in rows)
    parts = []
    for r in rows:
        shape = list(r.shape)
        shape[other] = size
        padded = torch.zeros(shape)
        padded[tuple(slice(0, s) for s in r.shape)] = r
        parts += [padded, torch.zeros([3, gap, size] if axis == 1 else [3, size, gap])]
    return torch.cat(parts[:-1], axis)


def grid(tiles: list[list[Tensor]], gap: int = 2) -> Tensor:
    """Rows of tiles [3, h, w] into one image."""
    return stack_rows([stack_rows(row, gap, axis=2) for row in tiles], gap, axis=1)


def histogram_image(groups: dict[str, Tensor], colours: dict[str, tuple[float, float, float]], bins: int = 30,
                    height: int = 120, bar: int = 4, title: str = "") -> Tensor:
    """Overlaid histograms (each normalised to its own count) of 1-D value groups, with the value range and counts."""
    values = torch.cat([v.flatten().float() for v in groups.values() if v.numel()])
    low, high = float(values.min()), float(values.max())
    high = high if high > low else low + 1.0
    width = bins * bar
    plot = torch.zeros(3, height, width)
    shares = {name: torch.histc(v.float(), bins=bins, min=low, max=high) / v.numel()
              for name, v in groups.items() if v.numel()}
    top = max(float(s.max()) for s in shares.values())
    for name, share in shares.items():
        rgb = torch.tensor(colours[name])[:, None, None]
        for b, h in enumerate((share / top * (height - 1)).round().long().tolist()):
            if h:
                column = plot[:, height - h:, b * bar:(b + 1) * bar]
                plot[:, height - h:, b * bar:(b + 1) * bar] = torch.maximum(column, 0.6 * rgb)
    legend = [text_image(f"{name} n={int(v.numel())} mean={float(v.float().mean()) if v.numel() else 0:.1f}",
                         colour=colours[name]) for name, v in groups.items()]
    axis = text_image(f"{low:.1f}" + " " * max(1, width // 4 - len(f"{low:.1f}") - len(f"{high:.1f}")) + f"{high:.1f}")
    return stack_rows([text_image(title), plot, axis, *legend], gap=2, axis=1)


def write_png(path: str, image: Tensor) -> str:
    """Writes a float image [3, H, W] in [0, 1] as an 8-bit RGB PNG, atomically; returns the path."""
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    height, width = pixels.shape[:2]
    raw = b"".join(b"\x00" + bytes(pixels[r].flatten().tolist()) for r in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=folder)
    with os.fdopen(fd, "wb") as handle:
        handle.write(png)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
