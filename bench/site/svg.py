"""History charts as standalone SVG, drawn directly: a few dozen lines beat shipping a plotting library's
output (matplotlib's SVG embeds glyph paths and ids that change between versions, so pages would not be
byte-stable) and keep the site free of any script or font it would have to load."""
from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 680, 250
LEFT, RIGHT, TOP, BOTTOM = 64, 64, 34, 62  # room on the right for the last slanted commit label
INK, GRID, LINE, BAD, GOOD = "#1a1a1a", "#d0d0d0", "#1f4e79", "#b00020", "#1b6e20"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        high = low + (abs(low) or 1.0) * 0.1
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    first = round(first, 12) + 0.0  # no 2.4000000000000004 or -0.0 labels
    ticks, value = [first], first
    while value < high - step * 1e-9:  # the last tick at or above `high`, so every interval fits
        value += step
        ticks.append(round(value, 12) + 0.0)
    return ticks


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _point_marks(x: float, p: dict, y_of) -> list[str]:
    """One version's CI bar and marker: a red triangle for a regression, green for better, else a dot."""
    y = y_of(p["mean"])
    out = []
    ci = p["ci95"] if p["ci95"] is not None and math.isfinite(p["ci95"]) else 0.0
    if ci:
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_of(p["mean"] - ci):.1f}" '
                   f'y2="{y_of(p["mean"] + ci):.1f}" stroke="{LINE}"/>')
    tip = escape(f'{p["label"]}: {_fmt(p["mean"])} ± {_fmt(ci)}' + (f' — {p["verdict"]}' if p["verdict"] else ""))
    if p["verdict"] in ("worse", "failed"):
        out.append(f'<path d="M{x - 7:.1f},{y - 6:.1f} L{x + 7:.1f},{y - 6:.1f} L{x:.1f},{y + 7:.1f} Z" '
                   f'fill="{BAD}"><title>{tip} (regression)</title></path>')
    elif p["verdict"] == "better":
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{GOOD}"><title>{tip}</title></circle>')
    else:
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{LINE}"><title>{tip}</title></circle>')
    return out


def history_chart(title: str, metric: str, direction: str, points: list[dict]) -> str:
    """points: [{label, mean, ci95, verdict, note}] in commit order. Regressions are red triangles."""
    finite = [p for p in points if p["mean"] is not None and math.isfinite(p["mean"])]
    lows = [p["mean"] - (p["ci95"] if p["ci95"] is not None and math.isfinite(p["ci95"]) else 0) for p in finite]
    highs = [p["mean"] + (p["ci95"] if p["ci95"] is not None and math.isfinite(p["ci95"]) else 0) for p in finite]
    ticks = nice_ticks(min(lows), max(highs)) if finite else []
    y_low, y_high = (ticks[0], ticks[-1]) if len(ticks) > 1 else (0.0, 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(i: int) -> float:
        return LEFT + (plot_w / 2 if len(points) == 1 else plot_w * i / (len(points) - 1))

    def y_of(v: float) -> float:
        return TOP + plot_h * (1 - (v - y_low) / (y_high - y_low))

    desc = f"{metric} ({direction}) over {len(points)} version(s), mean and 95% confidence interval"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="t d" font-family="sans-serif" font-size="11">',
           f'<title id="t">{escape(title)}</title><desc id="d">{escape(desc)}</desc>',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
           f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold" fill="{INK}">{escape(title)}</text>',
           f'<text x="{WIDTH - RIGHT}" y="18" text-anchor="end" fill="{INK}">{escape(metric)}'
           f'{" (" + escape(direction) + ")" if direction else ""}</text>']
    for t in ticks:
        y = y_of(t)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{INK}">{_fmt(t)}</text>')
    out.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="{INK}"/>')
    every = max(1, math.ceil(len(points) / 12))  # at most a dozen commit labels, so they never overlap
    for i, p in enumerate(points):
        if i % every == 0 or i == len(points) - 1:
            x = x_of(i)
            out.append(f'<text transform="translate({x:.1f},{TOP + plot_h + 12}) rotate(30)" fill="{INK}">'
                       f'{escape(p["label"])}</text>')
    path = [(x_of(i), y_of(p["mean"])) for i, p in enumerate(points) if p in finite]
    if len(path) > 1:
        out.append(f'<polyline fill="none" stroke="{LINE}" stroke-width="1.5" points="'
                   + " ".join(f"{x:.1f},{y:.1f}" for x, y in path) + '"/>')
    for i, p in enumerate(points):
        if p in finite:
            out += _point_marks(x_of(i), p, y_of)
    if any(p["verdict"] in ("worse", "failed") for p in points):
        out.append(f'<path d="M{LEFT + 4},{HEIGHT - 12} l12,0 l-6,11 z" fill="{BAD}"/>'
                   f'<text x="{LEFT + 22}" y="{HEIGHT - 3}" fill="{INK}">'
                   'significant regression vs the previous version</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
