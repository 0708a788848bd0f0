"""NIAH heatmaps: depth x context length per model, language and form, as SVG and PNG.

The README draws its long-context results as such pictures: x = context length, y = needle
depth (0% at the top), red-to-green over the score range with a colour bar, and the overall
score in the title. Skipped cells (beyond the model's context) are grey and marked "skip",
failed cells dark grey. Both files are written by hand (SVG text; PNG with zlib and a 3x5 pixel
font for the tick labels), so the report needs no plotting library.
"""

from __future__ import annotations

import html
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval.results.io import read_json, read_jsonl

SKIP_GREY = (200, 200, 200)
FAIL_GREY = (90, 90, 90)


@dataclass
class Heatmap:
    """One picture: a grid benchmark's cells for one language of one run."""

    model: str
    benchmark: str
    language: str
    form: str
    yarn: bool
    lengths: list[int]
    depths: list[int]
    cells: dict[tuple[int, int], float | str] = field(default_factory=dict)  # or skipped/failed

    @property
    def overall(self) -> float | None:
        scores = [v for v in self.cells.values() if isinstance(v, float)]
        return sum(scores) / len(scores) if scores else None

    @property
    def title(self) -> str:
        overall = "n/a" if self.overall is None else f"{100 * self.overall:.1f}%"
        yarn = ", YaRN" if self.yarn else ""
        return (f"{self.model} - {self.benchmark} {self.language} ({self.form}{yarn}): "
                f"overall {overall}")

    @property
    def stem(self) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.model)
        return f"niah-{safe}-{self.benchmark.replace('@', '-')}-{self.language}"


def length_label(tokens: int) -> str:
    return f"{tokens // 1024}K" if tokens % 1024 == 0 else str(tokens)


def colour(score: float) -> tuple[int, int, int]:
    """Red (0) through yellow (0.5) to green (1)."""
    s = min(1.0, max(0.0, score))
    red, yellow, green = (215, 48, 39), (254, 224, 139), (26, 152, 80)
    lo, hi, t = (red, yellow, s * 2) if s <= 0.5 else (yellow, green, (s - 0.5) * 2)
    return tuple(round(a + (b - a) * t) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]


def heatmaps_of_run(run_dir: Path) -> list[Heatmap]:
    """Every grid benchmark of a stored run, one heatmap per language."""
    manifest = read_json(run_dir / "manifest.json", "manifest")
    out = []
    for bench, record in manifest.get("benchmarks", {}).items():
        generated = (record.get("data") or {}).get("generated")
        if not generated:
            continue
        items = read_jsonl(run_dir / "items" / f"{bench}.jsonl")
        grid = generated["grid"]
        for language in grid["languages"]:
            heat = Heatmap(model=manifest["model"]["name"].rstrip("/").split("/")[-1],
                           benchmark=bench, language=language, form=generated["form"],
                           yarn=bool(generated.get("yarn")), lengths=list(grid["lengths"]),
                           depths=list(grid["depths"]))
            for item in items:
                d = item.get("details") or {}
                if d.get("language") != language:
                    continue
                key = (int(d["length"]), int(d["depth"]))
                heat.cells[key] = ("skipped" if item["verdict"] == "unscored" else
                                   "failed" if item["verdict"] == "error" else
                                   float(item["score"] or 0.0))
            out.append(heat)
    return out


# ---------------------------------------------------------------------------- SVG
_CELL, _LEFT, _TOP, _BAR = 44, 64, 46, 16


def _hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def to_svg(heat: Heatmap) -> str:
    """The heatmap as a standalone SVG document."""
    nx, ny = len(heat.lengths), len(heat.depths)
    width = _LEFT + nx * _CELL + 30 + _BAR + 40
    height = _TOP + ny * _CELL + 50
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             f'<title>{html.escape(heat.title)}</title>',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13" '
             f'font-weight="bold">{html.escape(heat.title)}</text>']
    for j, depth in enumerate(heat.depths):
        y = _TOP + j * _CELL
        parts.append(f'<text class="y-tick" x="{_LEFT - 6}" y="{y + _CELL / 2 + 4}" '
                     f'text-anchor="end">{depth}%</text>')
        for i, length in enumerate(heat.lengths):
            x = _LEFT + i * _CELL
            value = heat.cells.get((length, depth), "skipped")
            if isinstance(value, float):
                fill, label = _hex(colour(value)), f"{100 * value:.0f}"
            else:
                fill = _hex(SKIP_GREY if value == "skipped" else FAIL_GREY)
                label = "skip" if value == "skipped" else "fail"
            parts.append(f'<rect class="cell" data-length="{length}" data-depth="{depth}" '
                         f'x="{x}" y="{y}" width="{_CELL}" height="{_CELL}" fill="{fill}" '
                         f'stroke="white"><title>{length_label(length)} tokens, depth {depth}%: '
                         f'{label}</title></rect>')
            parts.append(f'<text x="{x + _CELL / 2}" y="{y + _CELL / 2 + 4}" '
                         f'text-anchor="middle" font-size="10">{label}</text>')
    bottom = _TOP + ny * _CELL
    for i, length in enumerate(heat.lengths):
        parts.append(f'<text class="x-tick" x="{_LEFT + i * _CELL + _CELL / 2}" '
                     f'y="{bottom + 15}" text-anchor="middle">{length_label(length)}</text>')
    parts.append(f'<text x="{_LEFT + nx * _CELL / 2}" y="{bottom + 34}" text-anchor="middle">'
                 'context length (tokens)</text>')
    parts.append(f'<text x="14" y="{_TOP + ny * _CELL / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {_TOP + ny * _CELL / 2})">needle depth (%)</text>')
    bar_x, steps = _LEFT + nx * _CELL + 30, 20
    for k in range(steps):
        fill = _hex(colour(1 - k / (steps - 1)))
        parts.append(f'<rect x="{bar_x}" y="{_TOP + k * ny * _CELL / steps:.1f}" width="{_BAR}" '
                     f'height="{ny * _CELL / steps + 0.5:.1f}" fill="{fill}"/>')
    parts.append(f'<text x="{bar_x + _BAR + 4}" y="{_TOP + 8}">100</text>')
    parts.append(f'<text x="{bar_x + _BAR + 4}" y="{bottom}">0</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------- PNG
_FONT = {  # 3x5 glyphs, rows top to bottom, "1" = ink
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", "K": "101101110101101", "%": "101001010100101",
    ".": "000000000000010", " ": "000000000000000", "-": "000000111000000",
}


def _text(pixels: list[bytearray], x: int, y: int, text: str, scale: int = 2) -> None:
    for n, char in enumerate(text):
        glyph = _FONT.get(char, _FONT[" "])
        for bit, ink in enumerate(glyph):
            if ink != "1":
                continue
            gx, gy = x + n * 4 * scale + (bit % 3) * scale, y + (bit // 3) * scale
            for dy in range(scale):
                for dx in range(scale):
                    _put(pixels, gx + dx, gy + dy, (0, 0, 0))


def _put(pixels: list[bytearray], x: int, y: int, rgb: Sequence[int]) -> None:
    if 0 <= y < len(pixels) and 0 <= x * 3 < len(pixels[y]):
        pixels[y][x * 3:x * 3 + 3] = bytes(rgb)


def _box(pixels: list[bytearray], x: int, y: int, w: int, h: int, rgb: Sequence[int]) -> None:
    for yy in range(y, y + h):
        for xx in range(x, x + w):
            _put(pixels, xx, yy, rgb)


def to_png(heat: Heatmap) -> bytes:
    """The heatmap as PNG: cells, tick labels, colour bar, overall score at the top."""
    nx, ny = len(heat.lengths), len(heat.depths)
    width, height = _LEFT + nx * _CELL + 30 + _BAR + 40, _TOP + ny * _CELL + 30
    pixels = [bytearray(b"\xff" * width * 3) for _ in range(height)]
    overall = "-" if heat.overall is None else f"{100 * heat.overall:.1f}%"
    _text(pixels, width // 2 - len(overall) * 4, 12, overall)
    for j, depth in enumerate(heat.depths):
        y = _TOP + j * _CELL
        _text(pixels, _LEFT - 6 - len(f"{depth}%") * 8, y + _CELL // 2 - 5, f"{depth}%")
        for i, length in enumerate(heat.lengths):
            value = heat.cells.get((length, depth), "skipped")
            rgb = colour(value) if isinstance(value, float) else (
                SKIP_GREY if value == "skipped" else FAIL_GREY)
            _box(pixels, _LEFT + i * _CELL + 1, y + 1, _CELL - 2, _CELL - 2, rgb)
    for i, length in enumerate(heat.lengths):
        label = length_label(length)
        _text(pixels, _LEFT + i * _CELL + _CELL // 2 - len(label) * 4, _TOP + ny * _CELL + 8,
              label)
    bar_x = _LEFT + nx * _CELL + 30
    for k in range(ny * _CELL):
        _box(pixels, bar_x, _TOP + k, _BAR, 1, colour(1 - k / max(1, ny * _CELL - 1)))
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0,
                                                              0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_heatmaps(run_dirs: Sequence[Path], out_dir: Path) -> list[dict[str, Any]]:
    """SVG and PNG of every grid benchmark of the runs under out_dir/niah/; views for pages."""
    views = []
    for run_dir in run_dirs:
        for heat in heatmaps_of_run(Path(run_dir)):
            folder = out_dir / "niah"
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"{heat.stem}-{Path(run_dir).name}"
            (folder / f"{stem}.svg").write_text(to_svg(heat), encoding="utf-8")
            (folder / f"{stem}.png").write_bytes(to_png(heat))
            views.append({"title": heat.title, "svg": f"niah/{stem}.svg",
                          "png": f"niah/{stem}.png", "benchmark": heat.benchmark,
                          "protocol": heat.benchmark.split("@")[-1]})
    return views
