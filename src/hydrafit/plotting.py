"""Matplotlib figure builders (no Lightning inside).

Figures are built with `matplotlib.figure.Figure`, not pyplot: no GUI backend, no global
figure registry to close, and they render headless with Agg into PNGs and TensorBoard.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
from matplotlib.figure import Figure

# Drawing 1M scatter markers takes Agg ~8 s a figure (the fit plot then dominated a 1M-point run;
# benchmarks/, row 3); beyond this many, every k-th point is drawn, which looks the same.
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
                   label="validation points", zorder=3, gid="validation")
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
    """`fig` rendered as PNG (once for both TensorBoard and fit.png): drawn once by Agg and
    encoded by `encoded`. savefig draws a figure with a layout engine twice (sweep.png: 1.1 s,
    not 0.6, for 48 jobs on this project's CPU) and encodes through PIL."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return encoded(canvas)


# fit_png's figure, its background pixels and the artists it redraws, by what a new one would
# draw differently.
_drawn: dict = {}


def shared_limits(arguments: list[dict]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits for the fit figures of a population (fit_png): the grid, and the truth and data
    of every member, with matplotlib's 5% margins. A prediction beyond them is cut at the frame,
    so that one wild member does not squash every figure of the sweep."""
    xs = np.concatenate([np.concatenate([a["grid"], a["x"]]) for a in arguments])
    ys = np.concatenate([np.concatenate([a["y"], a["y_val"], *([] if a["truth"] is None else [a["truth"]])])
                         for a in arguments])
    xs, ys = xs[np.isfinite(xs)], ys[np.isfinite(ys)]

    def padded(lo: float, hi: float) -> tuple[float, float]:
        pad = 0.05 * (hi - lo) or 0.5
        return float(lo - pad), float(hi + pad)
    return padded(xs.min(), xs.max()), padded(ys.min(), ys.max())


def fit_png(arguments: dict, limits) -> bytes:
    """fit_figure(**arguments) on the axes `limits` (shared_limits) as PNG, for a population's
    members (hydrafit.engine.population). What every member's figure shares (axes, ticks, truth, legend,
    the title but its last word) is drawn once (Backdrop); each member's data, baseline,
    prediction and the title's number are drawn onto those pixels (matplotlib's blitting): ~15 ms
    an image, not ~90 (most of a figure's time is laying out its text; a title's 28 glyphs took
    ~10 ms) on this project's CPU."""
    key = (limits, arguments["truth_label"], len(arguments["x"]), len(arguments["x_val"]),
           arguments["baseline"] is None, arguments["grid"][0], arguments["grid"][-1], arguments.get("axis_labels"))
    if key not in _drawn:
        _drawn.clear()
        _drawn[key] = Backdrop(arguments, limits)
    drawn = _drawn[key]
    ax, title = drawn.fig.axes[0], arguments["title"]
    number = drawn.number_of(title)
    drawn.canvas.restore_region(drawn.bare if number is None else drawn.titled)
    for artist in drawn.moving:
        gid = artist.get_gid()
        if gid in ("data", "validation"):
            x, y = ("x", "y") if gid == "data" else ("x_val", "y_val")
            artist.set_offsets(np.column_stack(thinned(arguments[x], arguments[y])))
        else:  # the prediction, the baseline
            artist.set_ydata(arguments[gid])
        ax.draw_artist(artist)
    if number is None:  # a title unlike the backdrop's (a diverged member's epoch): drawn whole
        ax.title.set_text(title)
        ax.draw_artist(ax.title)
    else:
        drawn.number.set_text(number)
        ax.draw_artist(drawn.number)
    drawn.canvas.restore_region(drawn.legend)  # the legend stays on top, as in fit_figure
    return encoded(drawn.canvas)


class Backdrop:
    """fit_png's figure, drawn once without the artists that change from member to member: its
    pixels without a title (`bare`) and with the title's words but its last (`titled`, where
    fit_png draws a member's number, right-aligned where fit_figure's whole title ends)."""

    def __init__(self, arguments: dict, limits):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.text import Text

        self.fig = fit_figure(**arguments)
        self.canvas = FigureCanvasAgg(self.fig)
        ax = self.fig.axes[0]
        ax.set_xlim(limits[0])
        ax.set_ylim(limits[1])
        self.moving = [a for a in (*ax.collections, *ax.lines) if a.get_gid() in ("data", "validation", "baseline", "prediction")]
        for artist in (*self.moving, ax.title):  # after the legend made its own copies of them
            artist.set_animated(True)
        self.canvas.draw()
        self.bare = self.canvas.copy_from_bbox(self.fig.bbox)
        self.legend = self.canvas.copy_from_bbox(ax.get_legend().get_window_extent())
        self.prefix, _, last = arguments["title"].rpartition(" ")
        box = ax.title.get_window_extent(self.canvas.get_renderer())  # the whole title, centred
        (left, _), (right, _) = ax.transAxes.inverted().transform([(box.x0, box.y0), (box.x1, box.y0)])
        self.length = len(last)
        words, self.number = (Text(x, ax.title.get_position()[1], text) for x, text in ((left, self.prefix), (right, last)))
        for part, align in ((words, "left"), (self.number, "right")):
            part.update_from(ax.title)
            part.set_transform(ax.title.get_transform())
            part.set_horizontalalignment(align)
            part.set_figure(self.fig)
        ax.draw_artist(words)
        self.titled = self.canvas.copy_from_bbox(self.fig.bbox)

    def number_of(self, title: str) -> str | None:
        """The last word of `title` when the rest is the backdrop's and it is as long as the
        backdrop's (so it ends where fit_figure's would); None otherwise."""
        prefix, _, last = title.rpartition(" ")
        return last if prefix == self.prefix and len(last) == self.length else None


def encoded(canvas) -> bytes:
    """The canvas's pixels as PNG (savefig would draw the figure again): its RGBA rows unfiltered,
    deflated at zlib's fastest level. 3 ms, not 8.5 through PIL, on this project's CPU, and no
    larger (40 kB, not 44): PIL filters every row adaptively, which is most of its time and gains
    nothing on a plot's flat colours. PNG: signature, then IHDR, IDAT and IEND chunks, each
    length, type, data and CRC-32 (tests/test_population.py reads it back with PIL)."""
    width, height = canvas.get_width_height()
    rows = np.asarray(canvas.buffer_rgba()).reshape(height, width * 4)
    unfiltered = np.hstack([np.zeros((height, 1), np.uint8), rows])  # filter type 0 before each row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA, not interlaced
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(unfiltered.tobytes(), 1))
            + chunk(b"IEND", b""))
