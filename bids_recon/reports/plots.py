"""Figures for the reports: matplotlib, rendered to inline SVG (self-contained, no files).

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies); every series also has its own marker, so none depends on colour alone. Axes
are labelled and ticks chosen by matplotlib (decades on log scales).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display: render to files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # 8 against 7 colours: no pair repeats
WIDTH, HEIGHT = 7.0, 3.0  # inches (at 96 dpi in the page: 672 × 288 px)


def _svg(figure: Figure) -> str:
    """The figure as an inline ``<svg>`` element (fonts as text, scalable, no XML header)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _style(index: int) -> dict[str, object]:
    return {"color": OKABE_ITO[index % len(OKABE_ITO)], "marker": MARKERS[index % len(MARKERS)]}


def line_plot(
    series: Mapping[str, Sequence[float]],
    x_labels: Sequence[str] | None = None,
    y_label: str = "",
    x_label: str = "",
    log_y: bool = False,
) -> str:
    """One line per named series (NaN skipped); ``x_labels`` name the points (e.g. layers).

    Returns an empty string when no value can be drawn.
    """
    values = {name: np.asarray(v, dtype=float) for name, v in series.items()}
    drawable = [v[np.isfinite(v) & ((v > 0) if log_y else True)] for v in values.values()]
    if not any(len(v) for v in drawable):
        return ""
    figure, axes = plt.subplots(figsize=(WIDTH, HEIGHT))
    longest = max(len(v) for v in values.values())
    for k, (name, v) in enumerate(values.items()):
        x = np.arange(len(v))
        shown = np.isfinite(v) & ((v > 0) if log_y else True)
        every = max(1, longest // 12)  # markers readable on long curves
        axes.plot(
            x[shown], v[shown], label=name, markevery=every, markersize=4, lw=1.5, **_style(k)
        )
    if log_y:
        axes.set_yscale("log")
    if x_labels is not None:
        axes.set_xticks(range(len(x_labels)), list(x_labels), rotation=45, ha="right")
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    return _svg(figure)


def interval_plot(
    groups: Sequence[str],
    series: Mapping[str, Sequence[tuple[float, float, float]]],
    y_label: str,
    chance: float | None = None,
) -> str:
    """Means with 95% intervals: per group (x, e.g. test sets), one point per series.

    ``series`` maps a name (e.g. a participant) to (mean, low, high) per group; NaN bounds draw
    the point alone. ``chance`` draws a dashed line.
    """
    if not groups or not series:
        return ""
    figure, axes = plt.subplots(figsize=(WIDTH, HEIGHT))
    width = 0.7 / max(len(series), 1)
    for k, (name, cells) in enumerate(series.items()):
        x = np.arange(len(groups)) - 0.35 + width * (k + 0.5)
        mean, low, high = (np.array([c[i] for c in cells], dtype=float) for i in range(3))
        errors = np.vstack([mean - low, high - mean])
        errors = np.where(np.isfinite(errors), errors, 0.0)
        style = _style(k)
        axes.errorbar(x, mean, yerr=errors, fmt=style["marker"], color=style["color"],
                      capsize=3, label=name, markersize=5)  # fmt: skip
    if chance is not None:
        axes.axhline(chance, color="#555555", ls="--", lw=1, label=f"chance ({chance:g})")
    axes.set_xticks(range(len(groups)), list(groups))
    axes.set_ylabel(y_label)
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    return _svg(figure)
