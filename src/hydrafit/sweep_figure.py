"""sweep.png: small multiples of a sweep (hydrafit.sweep writes it; `hydrafit-sweep-report` redraws it).

One panel per job, its own fit.png (truth / data / prediction) titled with its swept overrides and
the optimized metric; above them, when one numeric key is swept, the metric against that key
(one line per combination of the other swept keys). Built with matplotlib.figure.Figure, no pyplot.
"""
from __future__ import annotations

import math
import textwrap
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

from hydrafit.sweep import shown

PANEL_INCHES = (3.4, 2.6)
NO_FIT = {"missing": "not started (no job directory)", "running": "still running, or killed",
          "incomplete": "no metrics.json: killed before training?"}
DPI = 110


def number(value) -> float | None:
    """The override value as a float, None if it is not a plain number ('[16]', 'relu', 'true')."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def short_names(keys: list[str]) -> dict[str, str]:
    """'optimizer.lr' -> 'lr' where the last part is unique among `keys`, else the full key."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last)}


def metric_curve(jobs, keys: list[str], metric: str):
    """(key, {series label: [(x, y)]}, [(x, status) of jobs without a result]) when exactly one
    swept key is numeric, else None."""
    numeric = [k for k in keys if all(number(j.overrides[k]) is not None
                                      for j in jobs if k in j.overrides)]
    if len(numeric) != 1:
        return None
    key, names = numeric[0], short_names(keys)
    series, failed = defaultdict(list), []
    for job in jobs:
        if key not in job.overrides:
            continue
        x, y = number(job.overrides[key]), job.metrics.get(metric)
        if job.status == "completed" and y is not None and math.isfinite(y):
            others = " ".join(f"{names[k]}={job.overrides.get(k, '')}" for k in keys if k != key)
            series[others or metric].append((x, y))
        else:
            failed.append((x, job.status))
    return (key, series, failed) if series else None


def draw_curve(ax, curve, metric: str) -> None:
    """The metric against the swept numeric key; log axes where values span a decade or more."""
    key, series, failed = curve
    xs = [x for points in series.values() for x, _ in points] + [x for x, _ in failed]
    ys = [y for points in series.values() for _, y in points]
    if min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    if min(ys) > 0 and max(ys) / min(ys) >= 10:
        ax.set_yscale("log")
    for name, points in series.items():
        points.sort()
        ax.plot(*zip(*points), "o-", label=name)
    for x, status in failed:
        if x > 0 or ax.get_xscale() == "linear":
            ax.axvline(x, color="tab:red", linestyle=":", linewidth=1.2)
            ax.annotate(f" {status}", (x, 0.98), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", fontsize=8, color="tab:red")
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 0.03, not 3 x 10^-2
    sparse = FuncFormatter(lambda v, _: f"{v:g}" if round(v / 10 ** math.floor(math.log10(v))) in (2, 5)
                           else "")  # minor ticks of a log axis: label 0.02 and 0.05 only
    if len(set(xs)) <= 10:
        ax.set_xticks(sorted(set(xs)))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(sparse if ax.get_yscale() == "log" else NullFormatter())
    ax.set(xlabel=key, ylabel=metric, title=f"{metric} against {key}")
    ax.grid(True, which="major", alpha=0.3)
    if 1 < len(series) <= 8:
        ax.legend(fontsize=8)


def thumbnail(path, width: int) -> np.ndarray:
    """fit.png shrunk to `width` pixels with a good filter (matplotlib would alias it)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((width, width))
        return np.asarray(image)


def draw_job(ax, job, keys: list[str], metric: str, is_best: bool) -> None:
    """One job: its fit.png, or the reason it has none, titled with overrides and result."""
    names = short_names(keys)
    overrides = " ".join(f"{names[k]}={shown(job.overrides.get(k, '?'))}" for k in keys)
    value = job.metrics.get(metric)
    result = f"{metric} {value:.4g}" if job.status == "completed" and value is not None else job.status
    color = "black" if job.status == "completed" else "tab:red"
    ax.set_title(f"#{job.num} {overrides}\n{result}{'  ★ best' if is_best else ''}",
                 fontsize=8, color="tab:green" if is_best else color)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set(color="tab:green" if is_best else "0.8", linewidth=2.5 if is_best else 1)
    if job.fit_png is not None:
        ax.imshow(thumbnail(job.fit_png, int(PANEL_INCHES[0] * DPI)))
    else:
        message = textwrap.fill(job.error or NO_FIT.get(job.status, f"no fit.png ({job.status})"), 40)
        ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=7, color=color,
                transform=ax.transAxes)


def sweep_figure(jobs, keys: list[str], metric: str, best: int | None, title: str = "") -> Figure:
    """The whole sweep.png: optional metric-vs-key curve on top, then one panel per job."""
    curve = metric_curve(jobs, keys, metric)
    n = max(len(jobs), 1)
    ncols = n if n <= 4 else min(5, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    heights = [1.3] * bool(curve) + [1.0] * nrows
    fig = Figure(figsize=(max(ncols, 2) * PANEL_INCHES[0], sum(heights) * PANEL_INCHES[1] + 0.5),
                 dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(len(heights), ncols, height_ratios=heights)
    if curve:
        draw_curve(fig.add_subplot(grid[0, :]), curve, metric)
    for i, job in enumerate(jobs):
        ax = fig.add_subplot(grid[bool(curve) + i // ncols, i % ncols])
        draw_job(ax, job, keys, metric, job.num == best)
    fig.suptitle(title, fontsize=10)
    return fig
