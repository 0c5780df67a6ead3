"""Inline SVG charts for the HTML report: no JavaScript, no plotting library, no network.

Every chart is a string ``<svg ...>...</svg>`` that a browser renders as is, so the report is one
self-contained file (it opens from a laptop's disk or an S3 console alike). Data markers carry
``class="pt filled"`` or ``class="pt hollow"`` and heatmap cells ``class="cell"``, so tests (and a
reader's stylesheet) can tell them apart from legend symbols.
"""

from __future__ import annotations

import math
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
W, H = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 150, 28, 44  # plot margins; the legend lives in the right margin
STOP = "#d62728"  # the cross at an ASHA-stopped curve's last point


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks in [lo, hi] (lo > 0); decades only when those are too many, the ends when
    the range is under one step."""
    exps = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for mults in ((1, 2, 5), (1,)):
        ticks = [m * 10.0 ** e for e in exps for m in mults
                 if lo * (1 - 1e-9) <= m * 10.0 ** e <= hi * (1 + 1e-9)]
        if len(ticks) <= 8:
            break
    return ticks if len(ticks) >= 2 else [lo, hi]


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.2g}"


def _marker(kind: str, x: float, y: float, color: str, hollow: bool = False, r: float = 4.0,
            cls: str = "", tip: str = "") -> str:
    """One symbol: ``circle``, ``diamond`` or ``cross``; hollow = white fill, coloured outline."""
    fill = "white" if hollow else color
    attrs = f' class="{cls}"' if cls else ""
    title = f"<title>{escape(tip)}</title>" if tip else ""
    if kind == "cross":
        d = (f"M{x - r:.1f},{y - r:.1f}L{x + r:.1f},{y + r:.1f}"
             f"M{x - r:.1f},{y + r:.1f}L{x + r:.1f},{y - r:.1f}")
        return f'<path{attrs} d="{d}" stroke="{color}" stroke-width="2.5">{title}</path>'
    if kind == "diamond":
        r *= 1.5
        pts = f"{x:.1f},{y - r:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r:.1f} {x - r:.1f},{y:.1f}"
        return (f'<polygon{attrs} points="{pts}" fill="{fill}" stroke="{color}" '
                f'stroke-width="2">{title}</polygon>')
    return (f'<circle{attrs} cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}" stroke="{color}" '
            f'stroke-width="1.5">{title}</circle>')


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
        self.legend: list[tuple[str, str, str, str, bool]] = []

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

    def add_legend(self, label: str, color: str, dash: str = "", marker: str = "",
                   hollow: bool = False) -> None:
        """A line sample (``dash`` for dashed), or with ``marker`` that symbol instead."""
        self.legend.append((label, color, dash, marker, hollow))

    def close(self) -> str:
        for i, (label, color, dash, marker, hollow) in enumerate(self.legend):
            y = TOP + 6 + 16 * i
            x = W - RIGHT + 10
            if marker:
                self.parts.append(_marker(marker, x + 9, y, color, hollow))
            else:
                self.parts.append(f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{color}" '
                                  f'stroke-width="3" stroke-dasharray="{dash}"/>')
            self.parts.append(f'<text x="{x + 22}" y="{y + 4}">{escape(label[:22])}</text>')
        return "".join(self.parts) + "</svg>"


def _finite(y) -> bool:
    return isinstance(y, int | float) and math.isfinite(y)


def line_chart(series: list[dict], title: str, xlabel: str, ylabel: str) -> str:
    """series: [{"label", "points": [(x, y), ...], "dashed": bool, "stopped": bool}] -> one SVG
    line chart; a ``stopped`` series ends in a cross (where ASHA cut it), explained in the legend."""
    pts = [p for s in series for p in s["points"] if _finite(p[1])]
    if not pts:
        return empty(title)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    pad = max((max(ys) - min(ys)) * 0.05, 0.5)
    f = _Frame(title, xlabel, ylabel, (min(0, min(xs)), max(xs)), (min(ys) - pad, max(ys) + pad))
    f.y_axis()
    f.x_axis([(t, _fmt(t)) for t in _ticks(f.x0, f.x1)])
    stops = []
    for i, s in enumerate(series):
        color, dash = PALETTE[i % len(PALETTE)], "5,4" if s.get("dashed") else ""
        good = [(x, y) for x, y in s["points"] if _finite(y)]
        path = " ".join(f"{f.px(x):.1f},{f.py(y):.1f}" for x, y in good)
        f.parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" '
                       f'stroke-dasharray="{dash}"/>')
        f.add_legend(s["label"], color, dash)
        if s.get("stopped") and good:
            x, y = good[-1]
            stops.append(_marker("cross", f.px(x), f.py(y), STOP, cls="stop",
                                 tip=f"{s['label']}: stopped at {x:g}"))
    f.parts += stops  # drawn last: above every curve
    if stops:
        f.add_legend("stopped by ASHA", STOP, marker="cross")
    return f.close()


def scatter(series: list[dict], title: str, xlabel: str, ylabel: str, log_x: bool = False,
            categories: list[str] | None = None) -> str:
    """Points: series [{"label", "points": [(x, y, tip)], "color", "marker", "hollow"}].

    ``categories``: x is an index into them (a choice parameter); ``log_x``: a log10 axis (points
    at x <= 0 are left out). Non-finite y is left out.
    """
    def usable(p):
        return _finite(p[1]) and _finite(p[0]) and (p[0] > 0 or not log_x)

    pts = [p for s in series for p in s["points"] if usable(p)]
    if not pts:
        return empty(title)
    def tx(x: float) -> float:  # the frame works in log10(x) on a log axis
        return math.log10(x) if log_x else x

    ys = [p[1] for p in pts]
    pad = max((max(ys) - min(ys)) * 0.08, 0.5)
    if categories is not None:
        x_range = (-0.5, len(categories) - 0.5)
    else:
        lo, hi = min(tx(p[0]) for p in pts), max(tx(p[0]) for p in pts)
        span = (hi - lo) * 0.05 or (0.1 if log_x else max(abs(lo) * 0.05, 0.5))
        x_range = (lo - span, hi + span)
    f = _Frame(title, xlabel + (" (log scale)" if log_x else ""), ylabel, x_range,
               (min(ys) - pad, max(ys) + pad))
    f.y_axis()
    if categories is not None:
        f.x_axis([(i, c) for i, c in enumerate(categories)] if len(categories) <= 12 else [])
    elif log_x:
        f.x_axis([(math.log10(t), _fmt(t)) for t in _log_ticks(10 ** f.x0, 10 ** f.x1)])
    else:
        f.x_axis([(t, _fmt(t)) for t in _ticks(f.x0, f.x1)])
    for i, s in enumerate(series):
        color, kind = s.get("color", PALETTE[i % len(PALETTE)]), s.get("marker", "circle")
        hollow = bool(s.get("hollow"))
        good = [p for p in s["points"] if usable(p)]
        for x, y, *tip in good:
            f.parts.append(_marker(kind, f.px(tx(x)), f.py(y), color, hollow,
                                   cls="pt hollow" if hollow else "pt filled",
                                   tip=tip[0] if tip else f"{x:g}: {y:.4g}"))
        if good:
            f.add_legend(s["label"], color, marker=kind, hollow=hollow)
    return f.close()


def heatmap(matrix: list[list[float]], labels: list[str], title: str,
            xlabel: str = "predicted class", ylabel: str = "true class") -> str:
    """A [K, K] count matrix as a grid of cells, each row normalised to its sum (so a cell is the
    share of that row's class), shaded white -> blue; hover shows the count and share."""
    k = len(matrix)
    cell = max(10, min(36, 560 // max(k, 1)))
    margin = 8 + 6 * min(max((len(c) for c in labels), default=1), 14)  # room for the labels
    left, top = margin + 20, margin + 34
    width, height = max(left + k * cell + 16, 360), top + k * cell + 16  # 360: room for the title
    font = min(11, cell - 2)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="{font}">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="8" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
             f'<text x="{left + k * cell / 2}" y="30" text-anchor="middle" font-size="11">'
             f'{escape(xlabel)}</text>',
             f'<text transform="translate(12,{top + k * cell / 2}) rotate(-90)" '
             f'text-anchor="middle" font-size="11">{escape(ylabel)}</text>']
    for i, row in enumerate(matrix):
        total = sum(row)
        y = top + i * cell
        name = escape(labels[i][:14])
        parts.append(f'<text x="{left - 3}" y="{y + cell / 2 + font / 3:.1f}" text-anchor="end">'
                     f'{name}</text>')
        parts.append(f'<text transform="translate({left + i * cell + cell / 2 + font / 3:.1f},'
                     f'{top - 3}) rotate(-90)">{name}</text>')
        for j, n in enumerate(row):
            share = n / total if total else None
            fill = "#eee" if share is None else _blue(share)
            tip = (f"true {labels[i]}, predicted {labels[j]}: {n}"
                   + ("" if share is None else f" ({100 * share:.1f}% of the row)"))
            text = ""
            if share is not None and cell >= 24 and share >= 0.005:
                ink = "white" if share > 0.5 else "#222"
                text = (f'<text x="{left + j * cell + cell / 2}" y="{y + cell / 2 + 3}" '
                        f'text-anchor="middle" font-size="9" fill="{ink}">{round(100 * share)}</text>')
            parts.append(f'<rect class="cell" x="{left + j * cell}" y="{y}" width="{cell}" '
                         f'height="{cell}" fill="{fill}" stroke="white" stroke-width="0.5">'
                         f'<title>{escape(tip)}</title></rect>{text}')
    return "".join(parts) + "</svg>"


def _blue(share: float) -> str:
    """White (0) -> PALETTE blue (1), linearly per channel."""
    end = (0x1F, 0x77, 0xB4)
    return "#" + "".join(f"{round(255 + (c - 255) * min(max(share, 0.0), 1.0)):02x}" for c in end)


def bar_chart(categories: list[str], series: list[dict], title: str, ylabel: str,
              y_range: tuple[float, float] | None = None) -> str:
    """Grouped vertical bars. series: [{"label", "values": [one per category]}]."""
    vals = [v for s in series for v in s["values"] if v is not None]
    if not vals or not categories:
        return empty(title)
    lo, hi = y_range or (min(0.0, min(vals)), max(vals) * 1.05 or 1.0)
    f = _Frame(title, "", ylabel, (0, len(categories)), (lo, hi))
    f.y_axis()
    f.x_axis([(i + 0.5, c[:12]) for i, c in enumerate(categories)] if len(categories) <= 16 else [])
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
