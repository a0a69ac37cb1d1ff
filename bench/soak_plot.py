"""An SVG line chart of a soak's CSV (``bench/load.py --soak|--day --csv``): a column over
time, one line per CSV, no plotting library needed.

    python bench/soak_plot.py OUT.svg day.csv [LABEL=other.csv ...] [--column rss_kb] [--title TEXT]
    python bench/soak_plot.py OUT.svg daemon=day.csv Asterisk=day.csv#asterisk_rss_kb

Values of ``*_kb`` columns are drawn in MB; the x axis is minutes since the first sample.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from xml.sax.saxutils import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
W, H, LEFT, RIGHT, TOP, BOTTOM = 820, 380, 60, 210, 30, 40


def series(path: Path, column: str) -> list[tuple[float, float]]:
    scale = 1 / 1024 if column.endswith("_kb") else 1.0
    with open(path) as fh:
        return [(float(r["t"]) / 60, float(r[column]) * scale) for r in csv.DictReader(fh)
                if r.get(column) not in (None, "", "-1")]


def nice_step(span: float, ticks: int = 6) -> float:
    raw = span / ticks
    for e in range(-3, 7):
        for m in (1, 2, 5):
            if m * 10 ** e >= raw:
                return m * 10 ** e
    return raw


def svg(lines: list[tuple[str, list[tuple[float, float]]]], title: str, ylabel: str) -> str:
    pts = [p for _, s in lines for p in s]
    x1 = max(p[0] for p in pts) or 1.0
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    ys = nice_step(max(y1 - y0, 1.0))
    y0, y1 = ys * int(y0 // ys), ys * (int(y1 // ys) + 1)
    xs = nice_step(x1)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + x / x1 * pw

    def py(y: float) -> float:
        return TOP + ph - (y - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="11">', f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>']
    y = y0
    while y <= y1 + 1e-9:
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
        y += ys
    x = 0.0
    while x <= x1 + 1e-9:
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="#eee"/>')
        out.append(f'<text x="{px(x):.1f}" y="{TOP + ph + 15}" text-anchor="middle">{x:g}</text>')
        x += xs
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 6}" text-anchor="middle">minutes</text>')
    out.append(f'<text x="14" y="{TOP + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {TOP + ph / 2})">{escape(ylabel)}</text>')
    for i, (label, s) in enumerate(lines):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in s)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        out.append(f'<line x1="{LEFT + pw + 10}" x2="{LEFT + pw + 30}" y1="{TOP + 14 * i + 6}" '
                   f'y2="{TOP + 14 * i + 6}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{LEFT + pw + 34}" y="{TOP + 14 * i + 10}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("csvs", nargs="+", help="CSV files, each optionally LABEL=PATH, PATH#COLUMN for another column")
    ap.add_argument("--column", default="rss_kb")
    ap.add_argument("--title", default="daemon RSS over the soak")
    a = ap.parse_args()
    lines = []
    for item in a.csvs:
        label, _, path = item.rpartition("=")
        path, _, column = path.partition("#")
        lines.append((label or Path(path).stem, series(Path(path), column or a.column)))
    unit = "MB" if a.column.endswith("_kb") else ""
    a.out.write_text(svg(lines, a.title, f"{a.column.removesuffix('_kb')} {unit}".strip()))


if __name__ == "__main__":
    main()
