"""Inline SVG charts for the HTML report: no JavaScript, no plotting library, no network.

Every chart is a string ``<svg ...>...</svg>`` that a browser renders as is, so the report is one
self-contained file (it opens from a laptop's disk or an S3 console alike).
"""

from __future__ import annotations

import math
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
W, H = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 150, 28, 44  # plot margins; the legend lives in the right margin


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.2g}"


class _Frame:
    """Maps data to pixels and draws axes, grid, title and legend."""

    def __init__(self, title: str, xlabel: str, ylabel: str, x_range, y_range):
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
                      f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
                      f'<rect width="{W}" height="{H}" fill="white"/>',
                      f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
                      f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">'
                      f'{escape(xlabel)}</text>',
                      f'<text transform="translate(14,{(TOP + H - BOTTOM) / 2}) rotate(-90)" '
                      f'text-anchor="middle">{escape(ylabel)}</text>']
        self.legend: list[tuple[str, str, str]] = []

    def px(self, x: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return LEFT + (x - self.x0) / span * (W - LEFT - RIGHT)

    def py(self, y: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return H - BOTTOM - (y - self.y0) / span * (H - TOP - BOTTOM)

    def y_axis(self) -> None:
        for t in _ticks(self.y0, self.y1):
            y = self.py(t)
            self.parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                              f'stroke="#ddd"/><text x="{LEFT - 4}" y="{y + 4:.1f}" '
                              f'text-anchor="end">{_fmt(t)}</text>')
        self.parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{H - BOTTOM}" stroke="#333"/>')

    def x_axis(self, ticks: list[tuple[float, str]]) -> None:
        base = H - BOTTOM
        self.parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{base}" y2="{base}" stroke="#333"/>')
        for x, label in ticks:
            self.parts.append(f'<text x="{self.px(x):.1f}" y="{base + 14}" text-anchor="middle">'
                              f'{escape(label)}</text>')

    def add_legend(self, label: str, color: str, dash: str = "") -> None:
        self.legend.append((label, color, dash))

    def close(self) -> str:
        for i, (label, color, dash) in enumerate(self.legend):
            y = TOP + 6 + 16 * i
            x = W - RIGHT + 10
            self.parts.append(f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{color}" '
                              f'stroke-width="3" stroke-dasharray="{dash}"/>'
                              f'<text x="{x + 22}" y="{y + 4}">{escape(label[:22])}</text>')
        return "".join(self.parts) + "</svg>"


def line_chart(series: list[dict], title: str, xlabel: str, ylabel: str) -> str:
    """series: [{"label", "points": [(x, y), ...], "dashed": bool}] -> one SVG line chart."""
    pts = [p for s in series for p in s["points"] if p[1] is not None and math.isfinite(p[1])]
    if not pts:
        return empty(title)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    pad = max((max(ys) - min(ys)) * 0.05, 0.5)
    f = _Frame(title, xlabel, ylabel, (min(0, min(xs)), max(xs)), (min(ys) - pad, max(ys) + pad))
    f.y_axis()
    f.x_axis([(t, _fmt(t)) for t in _ticks(f.x0, f.x1)])
    for i, s in enumerate(series):
        color, dash = PALETTE[i % len(PALETTE)], "5,4" if s.get("dashed") else ""
        good = [(x, y) for x, y in s["points"] if y is not None and math.isfinite(y)]
        path = " ".join(f"{f.px(x):.1f},{f.py(y):.1f}" for x, y in good)
        f.parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" '
                       f'stroke-dasharray="{dash}"/>')
        f.add_legend(s["label"], color, dash)
    return f.close()


def bar_chart(categories: list[str], series: list[dict], title: str, ylabel: str,
              y_range: tuple[float, float] | None = None) -> str:
    """Grouped vertical bars. series: [{"label", "values": [one per category]}]."""
    vals = [v for s in series for v in s["values"] if v is not None]
    if not vals or not categories:
        return empty(title)
    lo, hi = y_range or (min(0.0, min(vals)), max(vals) * 1.05 or 1.0)
    f = _Frame(title, "", ylabel, (0, len(categories)), (lo, hi))
    f.y_axis()
    f.x_axis([(i + 0.5, c) for i, c in enumerate(categories)] if len(categories) <= 16 else [])
    width = 0.8 / max(len(series), 1)
    for j, s in enumerate(series):
        color = PALETTE[j % len(PALETTE)]
        for i, v in enumerate(s["values"]):
            if v is None:
                continue
            x = f.px(i + 0.1 + j * width)
            y, y0 = f.py(v), f.py(max(lo, 0.0))
            f.parts.append(f'<rect x="{x:.1f}" y="{min(y, y0):.1f}" width="{f.px(width) - LEFT:.1f}" '
                           f'height="{abs(y0 - y):.1f}" fill="{color}"><title>{escape(s["label"])} '
                           f'{escape(categories[i])}: {v:.3g}</title></rect>')
        f.add_legend(s["label"], color)
    return f.close()


def empty(title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="60"><text x="10" y="30" '
            f'font-family="sans-serif">{escape(title)}: no data yet</text></svg>')
