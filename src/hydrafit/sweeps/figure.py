"""sweep.png: small multiples of a sweep (hydrafit.sweeps.summary writes it; `hydrafit-sweep-report` redraws it).

One panel per job, its own fit.png (truth / data / prediction) titled with its swept overrides and
the optimized metric; above them, when one numeric key is swept, the metric against that key
(one line per combination of the other swept keys). When `seed` is swept, the chart shows each
group's mean over seeds with a ±1 std band and the panels one median seed per group; beyond
MAX_PANELS jobs only the best are drawn. Built with matplotlib.figure.Figure, no pyplot.
"""
from __future__ import annotations

import math
import textwrap
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

from hydrafit.sweeps.records import Plan
from hydrafit.sweeps.tables import ranked, seed_groups, shown

PANEL_INCHES = (3.4, 2.6)
MAX_PANELS = 12  # beyond this, panels of near-identical fits say nothing the table does not
NO_FIT = {"missing": "not started (no job directory)", "running": "still running", "died": "its process died",
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
    scale_axes(ax, xs, ys)
    for name, points in series.items():
        points.sort()
        ax.plot(*zip(*points), "o-", label=name)
    mark_failed(ax, failed)
    style_axes(ax, xs, key, metric, len(series))


def scale_axes(ax, xs, ys) -> None:
    """Log axes where the values span a decade or more."""
    if min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    if min(ys) > 0 and max(ys) / min(ys) >= 10:
        ax.set_yscale("log")


def mark_failed(ax, failed) -> None:
    """A red dotted line at each x whose job (or jobs) did not complete, labelled with why."""
    for x, status in failed:
        if x > 0 or ax.get_xscale() == "linear":
            ax.axvline(x, color="tab:red", linestyle=":", linewidth=1.2)
            ax.annotate(f" {status}", (x, 0.98), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", fontsize=8, color="tab:red")


def style_axes(ax, xs, key: str, metric: str, n_series: int, title: str = "") -> None:
    """Plain tick labels (0.03, not 3 x 10^-2), the swept values as ticks, labels, legend."""
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    sparse = FuncFormatter(lambda v, _: f"{v:g}" if round(v / 10 ** math.floor(math.log10(v))) in (2, 5)
                           else "")  # minor ticks of a log axis: label 0.02 and 0.05 only
    if len(set(xs)) <= 10:
        ax.set_xticks(sorted(set(xs)))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(sparse if ax.get_yscale() == "log" else NullFormatter())
    ax.set(xlabel=key, ylabel=metric, title=title or f"{metric} against {key}")
    ax.grid(True, which="major", alpha=0.3)
    if 1 < n_series <= 8:
        ax.legend(fontsize=8)


def thumbnail(path, width: int) -> np.ndarray:
    """fit.png shrunk to `width` pixels with a good filter (matplotlib would alias it)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((width, width))
        return np.asarray(image)


def draw_job(ax, job, keys: list[str], metric: str, is_best: bool, note: str = "") -> None:
    """One job: its fit.png, or the reason it has none, titled with overrides, result and `note`."""
    names = short_names(keys)
    overrides = " ".join(f"{names[k]}={shown(job.overrides.get(k, '?'))}" for k in keys)
    value = job.metrics.get(metric)
    result = f"{metric} {value:.4g}" if job.status == "completed" and value is not None else job.status
    color = "black" if job.status == "completed" else "tab:red"
    ax.set_title(f"#{job.num} {overrides}\n{result}{note}{'  ★ best' if is_best else ''}",
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


def seed_band(groups, metric: str):
    """(key, {series label: [(x, mean, std, n)]}, [(x, why)], tick labels) of a sweep over seeds:
    the metric's mean and spread over seeds against the one numeric swept key besides seed
    (one series per value of the other keys); with no such key (key None) one point per group
    at x = 0, 1, ... named by the tick labels."""
    groups = sorted(groups, key=lambda g: min(j.num for j in g.jobs))  # the sweep's order
    others = list(groups[0].values)
    numeric = [k for k in others if all(number(g.values[k]) is not None for g in groups)]
    key, names = (numeric[0] if len(numeric) == 1 else None), short_names(others)
    series, failed, ticks = defaultdict(list), [], []
    for i, group in enumerate(groups):
        x = number(group.values[key]) if key else i
        label = " ".join(f"{names[k]}={shown(group.values[k])}" for k in others if k != key)
        ticks.append(label or "all")
        stats = group.stats(metric)
        if stats:
            series[label if key else metric].append((x, *stats))
        if len(group.completed) < len(group.jobs):
            failed.append((x, f"{len(group.jobs) - len(group.completed)} of {len(group.jobs)} not completed"))
    return key, series, failed, ticks


def draw_band(ax, band, metric: str) -> None:
    """Mean line with a ±1 standard deviation band per series (error bars for categories)."""
    key, series, failed, ticks = band
    points = [p for ps in series.values() for p in ps]
    xs = [p[0] for p in points] + [x for x, _ in failed]
    if key:
        scale_axes(ax, xs, [p[1] for p in points])
    for name, ps in series.items():
        x, mean, std, _ = (np.array(v) for v in zip(*sorted(ps)))
        std = np.nan_to_num(std)  # one seed: no spread to draw
        if key:
            (line,) = ax.plot(x, mean, "o-", label=name)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
        else:
            ax.errorbar(x, mean, yerr=std, fmt="o", capsize=4, label=name)
    mark_failed(ax, failed)
    seeds = max((p[3] for p in points), default=0)
    title = f"{metric}: mean ± 1 std over {seeds} seeds" + (f", against {key}" if key else "")
    style_axes(ax, xs, key or "", metric, len(series) if key else 1, title)
    if not key:
        ax.set_xticks(range(len(ticks)), [textwrap.fill(t, 24) for t in ticks], fontsize=8)
        ax.set_xlim(-0.5, len(ticks) - 0.5)


def panel_jobs(jobs, groups, metric: str, maximize: bool) -> tuple[list, dict[int, str], str]:
    """(jobs drawn as panels, a note per job number, a caption). Seeds swept: one panel per
    group, its median seed (not its luckiest), best groups first; else every job, or the
    MAX_PANELS best when there are more (summary.md lists them all)."""
    if groups:
        shown_groups, panels, notes = groups[:MAX_PANELS], [], {}
        for group in shown_groups:
            done = sorted(group.completed, key=lambda j: j.metrics.get(metric, math.inf))
            job = done[(len(done) - 1) // 2] if done else group.jobs[0]
            panels.append(job)
            notes[job.num] = f" (median of {len(done)} seeds)" if len(done) > 1 else ""
        more = f" of the best {len(shown_groups)} of {len(groups)} groups" if len(groups) > MAX_PANELS else ""
        return panels, notes, f"; panels: the median seed{more}"
    if len(jobs) <= MAX_PANELS:
        return jobs, {}, ""
    return ranked(jobs, Plan(metric=metric, maximize=maximize))[:MAX_PANELS], {}, \
        f"; panels: the best {MAX_PANELS} of {len(jobs)} jobs (all in summary.md)"


def sweep_figure(jobs, keys: list[str], metric: str, best: int | None, title: str = "",
                 maximize: bool = False) -> Figure:
    """The whole sweep.png: on top the metric against the swept numeric key (with seeds swept,
    their mean and spread), then the panels of panel_jobs."""
    groups = seed_groups(jobs, keys, metric, maximize)
    band = seed_band(groups, metric) if groups and any(g.completed for g in groups) else None
    curve = None if groups else metric_curve(jobs, keys, metric)
    panels, notes, caption = panel_jobs(jobs, groups, metric, maximize)
    n = max(len(panels), 1)
    ncols = n if n <= 4 else min(5, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    heights = [1.3] * bool(curve or band) + [1.0] * nrows
    fig = Figure(figsize=(max(ncols, 2) * PANEL_INCHES[0], sum(heights) * PANEL_INCHES[1] + 0.5),
                 dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(len(heights), ncols, height_ratios=heights)
    if band:
        draw_band(fig.add_subplot(grid[0, :]), band, metric)
    elif curve:
        draw_curve(fig.add_subplot(grid[0, :]), curve, metric)
    for i, job in enumerate(panels):
        ax = fig.add_subplot(grid[bool(curve or band) + i // ncols, i % ncols])
        draw_job(ax, job, keys, metric, job.num == best, notes.get(job.num, ""))
    fig.suptitle(title + caption, fontsize=10)
    return fig
