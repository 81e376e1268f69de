"""What a PBT run (hparams_search=pbt) did, on disk: the sweep's pbt_policy.csv (one row per
exploit) and pbt_lineage.png (each hyperparameter against epochs, one line per member), and
each member's pbt_schedule.yaml (hydrafit.report.member writes it, and its hyperparameters
each epoch as TensorBoard scalars `pbt/<key>`).

A member's *schedule* is what its own slot of the population trained with (its values from
epoch k on, and whom it copied when); its *lineage* is the run its final weights went through:
before its last copy they were the copied member's, and so on back to epoch 0. All members
start from the same weights (one seed), so the lineage is one ordinary run with a schedule of
hyperparameters, which `hydrafit-train pbt_replay=<member dir>` trains (hydrafit.engine.single).

The lineage state (engine.pbt.Exploitation.state()) holds members by population index;
`numbers` are their job numbers, the names of their run directories.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import yaml

from hydrafit.rundir.files import write_atomic

POLICY_FILE, FIGURE_FILE, SCHEDULE_FILE = "pbt_policy.csv", "pbt_lineage.png", "pbt_schedule.yaml"


def values_by_epoch(state: dict, k: int, epochs: int) -> dict[str, list]:
    """{key: [member k's value in each of `epochs` epochs]}: its own slot's staircase."""
    current = dict(state["initial"][k])
    changes = {row["epoch"]: row for row in state["rows"] if row["member"] == k}
    out: dict[str, list] = {key: [] for key in current}
    for epoch in range(epochs):
        if epoch in changes:
            current = {key: changes[epoch][f"new {key}"] for key in current}
        for key, value in current.items():
            out[key].append(value)
    return out


def schedule(state: dict, k: int, numbers: list[int]) -> list[dict]:
    """Member k's own schedule: [{from_epoch, <key>: value, (copied_from: job number)}]."""
    out = [{"from_epoch": 0, **state["initial"][k]}]
    for row in state["rows"]:
        if row["member"] == k:
            new = {key[4:]: value for key, value in row.items() if key.startswith("new ")}
            out.append({"from_epoch": row["epoch"], **new, "copied_from": numbers[row["copied_from"]]})
    return out


def lineage(state: dict, k: int, numbers: list[int]) -> list[dict]:
    """The run member k's final weights went through: [{from_epoch, trained_as: job number,
    <key>: value}], each segment the values of the member whose weights they were then."""
    segments, slot, end = [], k, math.inf
    while True:
        copies = [row for row in state["rows"] if row["member"] == slot and row["epoch"] < end]
        if not copies:
            segments.append({"from_epoch": 0, "trained_as": numbers[slot], **state["initial"][slot]})
            return segments[::-1]
        row = copies[-1]
        new = {key[4:]: value for key, value in row.items() if key.startswith("new ")}
        segments.append({"from_epoch": row["epoch"], "trained_as": numbers[slot], **new})
        slot, end = row["copied_from"], row["epoch"]


def schedule_yaml(state: dict, k: int, numbers: list[int]) -> str:
    """pbt_schedule.yaml of member k."""
    return yaml.safe_dump({
        "member": numbers[k], "metric": state["metric"],
        "schedule": schedule(state, k, numbers),
        "lineage": lineage(state, k, numbers),
    }, sort_keys=False)


def segment_values(segment: dict) -> dict:
    """The hyperparameters of a schedule's or lineage's segment ({config key: value})."""
    return {key: value for key, value in segment.items() if key not in ("from_epoch", "trained_as", "copied_from")}


def read_lineage(run_dir: Path) -> list[dict]:
    """The lineage a member's pbt_schedule.yaml records (pbt_replay=)."""
    return yaml.safe_load((run_dir / SCHEDULE_FILE).read_text())["lineage"]


def policy_csv(state: dict, numbers: list[int]) -> str:
    keys = list(state["initial"][0])
    columns = ["epoch", "member", "copied_from", *(f"old {k}" for k in keys), *(f"new {k}" for k in keys),
               "score", "copied_score"]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in state["rows"]:
        writer.writerow({**row, "member": numbers[row["member"]], "copied_from": numbers[row["copied_from"]]})
    return out.getvalue()


def lineage_png(state: dict, numbers: list[int], epochs: int, log_keys: set) -> bytes:
    """One panel per hyperparameter: each member's value against epochs (a step line, its jumps
    the exploits, marked), coloured by its final score (best dark)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure

    from hydrafit.plotting import png

    keys, metric = list(state["initial"][0]), state["metric"]
    scores = [s if math.isfinite(s) else math.nan for s in state["final_scores"]]
    finite = [s for s in scores if not math.isnan(s)] or [0.0]
    low, high = min(finite), max(finite)
    # errors are told apart by ratios: a log scale, so that one bad member does not wash out the others
    norm = LogNorm(low, high) if 0 < low < high else Normalize(low, high)
    cmap = colormaps["viridis"]
    fig = Figure(figsize=(7, 3.2 * len(keys)), dpi=110, layout="constrained")
    axes = fig.subplots(len(keys), 1, squeeze=False)[:, 0]
    for ax, key in zip(axes, keys):
        for k in sorted(range(len(numbers)), key=lambda k: -(scores[k] if not math.isnan(scores[k]) else math.inf)):
            values = values_by_epoch(state, k, epochs)[key]
            color = cmap(norm(scores[k])) if not math.isnan(scores[k]) else "lightgrey"
            ax.step(range(epochs), values, where="post", color=color, lw=1.2)
            jumps = [row["epoch"] for row in state["rows"] if row["member"] == k and row["epoch"] < epochs]
            ax.plot(jumps, [values[e] for e in jumps], "o", color=color, ms=3)
        if key in log_keys:
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=key)
    axes[0].set_title(f"PBT: {len(numbers)} members, {len(state['rows'])} exploits (dots); colour: final {metric}")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), label=f"final {metric}")
    return png(fig)


def write_lineage(sweep_dir: Path, outcome, numbers: list[int], policy) -> None:
    """pbt_policy.csv and pbt_lineage.png in the sweep directory; the members' job numbers
    (`numbers`, which name them in both and in their pbt_schedule.yaml) go to outcome.pbt."""
    state = outcome.pbt
    state["numbers"] = numbers
    write_atomic(sweep_dir / POLICY_FILE, policy_csv(state, numbers))
    log_keys = {key for key, dist in policy.space.items() if getattr(dist, "log", False)}
    write_atomic(sweep_dir / FIGURE_FILE, lineage_png(state, numbers, outcome.epochs, log_keys))
