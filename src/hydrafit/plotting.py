"""Matplotlib figure builders (no Lightning inside).

Figures are built with `matplotlib.figure.Figure`, not pyplot: no GUI backend, no global
figure registry to close, and they render headless with Agg into PNGs and TensorBoard.
"""
from __future__ import annotations

import io

from matplotlib.figure import Figure

# Drawing 1M scatter markers takes Agg ~8 s a figure (the fit plot then dominated a 1M-point run;
# benchmarks/, target 3); beyond this many, every k-th point is drawn, which looks the same.
MAX_MARKERS = 2000


def thinned(x, y):
    """(x, y), or every k-th pair of them when there are more than MAX_MARKERS."""
    step = -(-len(x) // MAX_MARKERS)
    return (x, y) if step <= 1 else (x[::step], y[::step])


def fit_figure(grid, truth, x, y, prediction, baseline=None, title="", truth_label="truth",
               dpi: int = 100, x_val=None, y_val=None, axis_labels=("x", "y")):
    """Truth / data / prediction (and dashed least-squares baseline) on one axis, like the
    Lux tutorial's figure. All arguments are 1-D array-likes except the labels. truth None
    (data from a file) leaves the truth curve out; x_val, y_val are drawn as hollow points."""
    fig = Figure(figsize=(6, 4), dpi=dpi)
    ax = fig.subplots()
    if truth is not None:
        ax.plot(grid, truth, color="tab:blue", linewidth=3, label=f"truth: ${truth_label}$")
    ax.scatter(*thinned(x, y), s=14, color="tab:orange", edgecolors="black", linewidths=0.5,
               label="data points", zorder=3, gid="data")
    if x_val is not None and len(x_val):
        ax.scatter(*thinned(x_val, y_val), s=14, color="white", edgecolors="tab:orange", linewidths=1,
                   label="validation points", zorder=3)
    ax.plot(grid, prediction, color="tab:green", linewidth=2, label="model prediction", zorder=4,
            gid="prediction")  # what refit_figure changes
    if baseline is not None:
        ax.plot(grid, baseline, color="black", linestyle="--", linewidth=1.2,
                label="least-squares polynomial", zorder=2, gid="baseline")
    ax.set(xlabel=axis_labels[0], ylabel=axis_labels[1], title=title)
    ax.legend(loc="best", fontsize=8)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.12, top=0.92)  # tight_layout costs a draw
    return fig


def refit_figure(fig, prediction, title: str):
    """`fig`, built by fit_figure, with another prediction curve and title, and its axis limits
    recomputed from all it shows as fit_figure's are. Cheaper than a new figure: no artists to
    build, no first-draw text layout (an image ~45 ms instead of ~80; benchmarks/, plot row)."""
    ax = fig.axes[0]
    next(line for line in ax.lines if line.get_gid() == "prediction").set_ydata(prediction)
    ax.set_title(title)
    ax.relim()  # from the lines; relim leaves scatter points out, so they are added back
    for points in ax.collections:
        ax.update_datalim(points.get_offsets())
    ax.autoscale_view()
    return fig


def png(fig) -> bytes:
    """`fig` rendered as PNG, once for both TensorBoard and fit.png."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


_last: dict = {}  # fit_png's figure, by what a new one would build differently


def fit_png(arguments: dict) -> bytes:
    """fit_figure(**arguments) as PNG. hydrafit.population renders its members' figures with it
    in worker processes; a worker redraws its last figure with the next member's data, baseline
    and prediction (refit_figure) when nothing else differs: the same pixels, ~35 ms less an image."""
    a = arguments
    key = (a["truth_label"], len(a["x"]), len(a["x_val"]), a["baseline"] is None, a["truth"] is None,
           a["grid"][0], a["grid"][-1], a["title"].split(":")[0])
    fig = _last.get(key)
    if fig is None:
        _last.clear()
        fig = _last[key] = fit_figure(**arguments)
        return png(fig)
    ax = fig.axes[0]
    for item in (*ax.lines, *ax.collections):
        if item.get_gid() == "baseline":
            item.set_ydata(a["baseline"])
        elif item.get_gid() == "data":
            item.set_offsets(list(zip(*thinned(a["x"], a["y"]))))
    return png(refit_figure(fig, a["prediction"], a["title"]))
