"""Charts as server-rendered SVG: no JavaScript, no CDN, readable without a network.

`bar_chart` stacks series per day; `line_chart` draws one polyline per series. Both scale to
their container (viewBox) and carry a <title> per point, which browsers show on hover.
"""

from __future__ import annotations

from datetime import date

from django.utils.html import escape
from django.utils.safestring import mark_safe

WIDTH, HEIGHT = 640, 230
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 30, 28
PALETTE = ["#417690", "#e8a33d", "#79aec8", "#c2185b", "#5b8c3a", "#8e6cbf", "#999999"]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 0.1
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _fmt(value: float, unit: str = "") -> str:
    if unit == "$":
        return f"${value:,.4f}" if value and value < 1 else f"${value:,.2f}"
    text = f"{value:,.0f}" if float(value).is_integer() or value >= 100 else f"{value:,.2f}"
    return f"{text}{unit}"


def _frame(title: str, days: list[date], top: float, unit: str, legend: list[str]) -> list[str]:
    plot_h, plot_w = HEIGHT - TOP - BOTTOM, WIDTH - LEFT - RIGHT
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccc" stroke-width="0.5"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#666">{escape(_fmt(top * i / 4, unit))}</text>')
    every = max(1, len(days) // 7)
    slot = plot_w / max(len(days), 1)
    for i, day in enumerate(days):
        if i % every == 0 or i == len(days) - 1:
            x = LEFT + slot * (i + 0.5)
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" fill="#666">{day:%m-%d}</text>')
    x = LEFT
    for i, name in enumerate(legend):
        color = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 14}" y="17" fill="#333">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return parts


def bar_chart(*, title: str, days: list[date], series: dict[str, list[float]], unit: str = "") -> str:
    """Stacked bars, one per day."""
    names = list(series)
    totals = [sum(series[n][i] or 0 for n in names) for i in range(len(days))]
    top = _nice_max(max(totals, default=0))
    parts = _frame(title, days, top, unit, names)
    plot_h, slot = HEIGHT - TOP - BOTTOM, (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    for i, day in enumerate(days):
        base = TOP + plot_h
        for k, name in enumerate(names):
            value = series[name][i] or 0
            if not value:
                continue
            h = plot_h * value / top
            base -= h
            parts.append(
                f'<rect x="{LEFT + slot * i + slot * 0.15:.1f}" y="{base:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[k % len(PALETTE)]}"><title>{day:%Y-%m-%d} {escape(name)}: '
                f"{escape(_fmt(value, unit))}</title></rect>"
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def line_chart(*, title: str, days: list[date], series: dict[str, list[float | None]], unit: str = "",
               top: float | None = None) -> str:
    """One line per series; None leaves a gap (a day without data, not a zero)."""
    names = list(series)
    values = [v for n in names for v in series[n] if v is not None]
    top = top or _nice_max(max(values, default=0))
    parts = _frame(title, days, top, unit, names)
    plot_h, slot = HEIGHT - TOP - BOTTOM, (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    for k, name in enumerate(names):
        color, points = PALETTE[k % len(PALETTE)], []
        for i, value in enumerate(series[name]):
            if value is None:
                continue
            x, y = LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * value / top
            points.append(f"{x:.1f},{y:.1f}")
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{days[i]:%Y-%m-%d} '
                         f"{escape(name)}: {escape(_fmt(value, unit))}</title></circle>")
        if len(points) > 1:
            parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="2"/>')
    parts.append("</svg>")
    return mark_safe("".join(parts))
