"""Small inline SVG line plots for the reports (no plotting library, no external files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")


def line_plot(
    series: Mapping[str, Sequence[float]],
    x_labels: Sequence[str] | None = None,
    y_label: str = "",
    log_y: bool = False,
    width: int = 560,
    height: int = 220,
) -> str:
    """An SVG with one polyline per named series (NaN values are skipped)."""
    left, right, top, bottom = 56, 150, 12, 48
    values = [np.asarray(v, dtype=float) for v in series.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if log_y:
        finite = finite[finite > 0]
    if finite.size == 0:
        return ""
    transform = np.log10 if log_y else (lambda v: v)
    low, high = float(transform(finite).min()), float(transform(finite).max())
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    n = max(len(v) for v in values)
    plot_w, plot_h = width - left - right, height - top - bottom

    def point(i: int, value: float) -> str:
        x = left + (plot_w * i / max(n - 1, 1))
        y = top + plot_h * (1 - (float(transform(value)) - low) / (high - low))
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(y_label)}">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        f'stroke="#999"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        tick = low + fraction * (high - low)
        label = f"1e{tick:.1f}" if log_y else f"{tick:.3g}"
        y = top + plot_h * (1 - fraction)
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{label}</text>'
        )
    if x_labels:
        for i, label in enumerate(x_labels):
            x = left + plot_w * i / max(n - 1, 1)
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 14}" font-size="9" '
                f'text-anchor="middle">{escape(str(label))}</text>'
            )
    parts.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="11" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    for k, (name, v) in enumerate(zip(series, values, strict=True)):
        colour = COLOURS[k % len(COLOURS)]
        points = " ".join(
            point(i, x) for i, x in enumerate(v) if np.isfinite(x) and (x > 0 or not log_y)
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{points}"/>'
        )
        parts.append(
            f'<text x="{left + plot_w + 8}" y="{top + 12 + 14 * k}" font-size="11" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
