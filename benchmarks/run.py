"""`make bench`: hydrafit against its baselines, row by row, in one run.

    python -m benchmarks.run                       # all targets, ~14 min on 2 cores
    python -m benchmarks.run --only t1,t3          # some of them
    python -m benchmarks.run --quick --out /tmp/r.md   # tiny sizes: checks the paths, not speed
    python -m benchmarks.run --threads 0           # torch's own thread count (default here: 1)

Each target measures its baseline and hydrafit in the same run and prints baseline, hydrafit
and their ratio; the table goes to benchmarks/results.md (what the README shows). Timings are
the fastest of a few repeats: on a shared machine the minimum is the figure least disturbed
by other work. Run from the repository root with the project's venv.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

# in_process and plain import torch and Lightning (~4 s): the targets that use them import them,
# so that --help answers at once.
from benchmarks import pbt, peers, populations, processes, sweep_overhead

RESULTS = Path(__file__).with_name("results.md")
MEASURED: dict[str, float] = {}  # figures one benchmark passes to another's row
# Rows 6 and 7 run the same lr x seed grids (lrs: how many of LRS; seeds: the 48- and the 480-job
# grid's), so that the vectorised sweep's time in one row can be read against the other's.
VEC_GRID, VEC_GRID_QUICK = dict(lrs=8, seeds=(6, 60)), dict(lrs=2, seeds=(1, 2))
SWEEP_GRID = {"optimizer.lr": ["0.003", "0.01", "0.03", "0.1"], "model.hidden_dims": ["[16]", "[32]"]}
LRS = ["0.001", "0.002", "0.003", "0.005", "0.01", "0.02", "0.03", "0.05"]
FULL = {"t1": dict(short=250, long=2250, repeats=5), "t2": dict(args=[], epochs=250, repeats=3),
        "t3": dict(n_points=1_000_000, batch_size=4096, repeats=3),
        "t4": dict(grid=SWEEP_GRID, common=[]), "plot": dict(epochs=250, repeats=3),
        "cli": dict(repeats=3), "overhead": dict(sizes=[10, 100, 1000]),
        "vec": dict(**VEC_GRID, common=[]), "peers": dict(**VEC_GRID, epochs=250, repeats=(3, 1)),
        "pop": dict(lrs=LRS[:8], seeds=6, shape_lrs=["0.001", "0.003", "0.01", "0.03", "0.1"],
                    widths=["[8]", "[16]", "[32]", "[64]"], shape_seeds=12, epochs=250, repeats=3, common=[]),
        "pbt": dict(members=32, seeds=[1, 2, 3], epochs=250, interval=25)}
QUICK = {"t1": dict(short=5, long=15, repeats=1),
         "t2": dict(args=["trainer.max_epochs=5"], epochs=5, repeats=1),
         "t3": dict(n_points=20_000, batch_size=4096, repeats=1),
         "t4": dict(grid={"seed": ["1"]}, common=["trainer.max_epochs=5"]),  # 1 job: 1 process less
         "plot": dict(epochs=10, repeats=1), "cli": dict(repeats=1), "overhead": dict(sizes=[10, 100]),
         "vec": dict(**VEC_GRID_QUICK, common=["trainer.max_epochs=5"]),
         "peers": dict(**VEC_GRID_QUICK, epochs=20, repeats=(1, 1)),
         "pop": dict(lrs=["0.01", "0.03"], seeds=1, shape_lrs=["0.01"], widths=["[8]", "[16]"], shape_seeds=2,
                     epochs=5, repeats=1, common=["trainer.max_epochs=5"]),
         "pbt": dict(members=4, seeds=[1], epochs=4, interval=2)}


@dataclass
class Row:
    """One line of the results table: what was compared, both figures, their ratio, the goal."""

    target: str
    compared: str
    baseline: str
    hydrafit: str
    ratio: str
    goal: str
    met: str


def judged(ratio: float, limit: float, at_most: bool) -> tuple[str, str]:
    """(ratio as text, 'yes'/'no') for a goal of ratio <= limit (at_most) or >= limit."""
    return f"{ratio:.2f}", "yes" if (ratio <= limit if at_most else ratio >= limit) else "no"


def target1(short: int, long: int, repeats: int) -> Row:
    """Seed, per epoch: hydrafit's default run against a plain loop, two-run difference each."""
    from benchmarks import in_process, plain

    base = plain.seed_ms_per_epoch(short, long, repeats + 2)
    ours = in_process.seed_ms_per_epoch(short, long, repeats)
    ratio, met = judged(ours / base, 3, at_most=True)
    return Row("1. Seed, per epoch", f"ms/epoch from runs of {short} and {long} epochs: plain PyTorch "
               "loop vs hydrafit's default run (TensorBoard logging, checkpoints, bar)",
               f"{base:.3f} ms", f"{ours:.3f} ms", f"{ratio}×", "≤ 3×", met)


def target2(args: list[str], epochs: int, repeats: int) -> Row:
    """Whole default run, process start to exit, against the naive Lightning script."""
    naive, ours = processes.whole_run(args, epochs, repeats)
    MEASURED["whole_run"] = ours  # what the plot row relates the plot's cost to
    ratio, met = judged(ours / naive, 1, at_most=True)
    return Row("2. Whole default run", "s, process start to exit: benchmarks/naive_lightning.py vs "
               f"hydrafit-train {' '.join(args)}".rstrip(), f"{naive:.2f} s", f"{ours:.2f} s",
               f"{ratio}×", "≤ 1×", met)


def target3(n_points: int, batch_size: int, repeats: int, device: str = "cpu") -> list[Row]:
    """Large data, one epoch: training samples/s against a plain loop slicing the same tensors,
    and, for context, hydrafit with one optimizer step per Lightning batch and what a bare
    LightningModule gets on the same batches."""
    from benchmarks import in_process, plain

    base = plain.large_samples_per_second(n_points, batch_size, repeats + 2, device)
    ours = in_process.large_samples_per_second(n_points, batch_size, repeats, device)
    one = in_process.large_samples_per_second(n_points, batch_size, repeats, device,
                                              extra=("dataset.steps_per_batch=1",))
    floor = in_process.lightning_floor_samples_per_second(n_points, batch_size, repeats, device)
    ratio, met = judged(ours / base, 0.8, at_most=False)
    name = "3. Large data" if device == "cpu" else f"5. GPU ({device_name(device)})"
    return [Row(name, f"training samples/s, one epoch of {n_points:,} points in batches of "
                f"{batch_size}: plain PyTorch loop vs hydrafit with its defaults (same process)",
                f"{base / 1e6:.3f} M/s", f"{ours / 1e6:.3f} M/s", f"{ratio}×", "≥ 0.8×", met),
            Row(f"{name}: one step per batch", "the same with dataset.steps_per_batch=1: one "
                "optimizer step per Lightning batch, Lightning's per-batch cost paid every step",
                f"{base / 1e6:.3f} M/s", f"{one / 1e6:.3f} M/s", f"{one / base:.2f}×", "context", "–"),
            Row(f"{name}: Lightning floor", "the same, plain loop vs a bare LightningModule on "
                "hydrafit's batches, one step each (no callbacks, logger, checkpoints): Lightning's own per-batch cost",
                f"{base / 1e6:.3f} M/s", f"{floor / 1e6:.3f} M/s", f"{floor / base:.2f}×", "context", "–")]


def target4(grid: dict[str, list[str]], common: list[str]) -> Row:
    """Sweeps: a grid in one `-m` against one hydrafit-train process per job."""
    separate, multirun = processes.sweep(grid, common)
    jobs = len(processes.grid_jobs(grid))
    ratio, met = judged(multirun / separate, 0.5, at_most=True)
    return Row("4. Sweep", f"s for a grid of {jobs} jobs ({' x '.join(grid)}): {jobs} hydrafit-train "
               "processes vs one hydrafit-train -m", f"{separate:.1f} s", f"{multirun:.1f} s",
               f"{ratio}×", "≤ 0.5×", met)


def overhead_rows(sizes: list[int]) -> list[Row]:
    """Per-job sweep bookkeeping after job 10 vs after job N (goal: within 1.5x), and what
    rebuilding the summary from every job directory after every job costs at the same points."""
    rows = []
    for n, at in sweep_overhead.measure(sizes).items():
        (old10, new10), (oldn, newn) = at[min(10, n)], at[n]
        ratio, met = judged(newn / new10, 1.5, at_most=True)
        rows.append(Row(f"Sweep bookkeeping, {n:,} jobs", f"ms between two jobs (summary.csv/.md "
                        f"current), after job {min(10, n)} vs after job {n:,}; reading every job dir after "
                        f"every job instead: {old10:.1f} ms vs {oldn:.1f} ms",
                        f"{new10:.1f} ms", f"{newn:.1f} ms", f"{ratio}×", "≤ 1.5×", met))
    return rows


def vectorized_rows(lrs: int, seeds: tuple[int, int], common: list[str]) -> list[Row]:
    """Row 6: lr x seed sweeps of the default experiment, Hydra's basic launcher against
    hydra/launcher=vectorized. The larger sweep's basic time is extrapolated from the smaller's
    per-job time (the basic launcher's cost per job does not fall with more jobs)."""
    small = processes.vectorized_sweep(LRS[:lrs], seeds[0], common, basic=True)
    large = processes.vectorized_sweep(LRS[:lrs], seeds[1], common, basic=False)
    per_job, basic_mb = small["basic"][0] / small["jobs"], small["basic"][1]
    rows = []
    for result, goal in ((small, 10), (large, 30)):
        jobs, (seconds, mb) = result["jobs"], result["vectorized"]
        measured = "basic" in result
        basic_s = result["basic"][0] if measured else per_job * jobs
        speedup, met = judged(basic_s / seconds, goal, at_most=False)
        how = "measured" if measured else f"extrapolated: {per_job:.2f} s a job x {jobs}"
        rows.append(Row(f"6. Vectorised sweep, {48 if goal == 10 else 480} jobs",
                        f"s and peak MB, `hydrafit-train -m optimizer.lr=<{lrs} values> seed=range(1,{jobs // lrs + 1})` "
                        f"({jobs} jobs): basic launcher ({how}) vs hydra/launcher=vectorized",
                        f"{basic_s:.1f} s, {basic_mb:.0f} MB" + ("" if measured else " (the 48-job run's)"),
                        f"{seconds:.1f} s, {mb:.0f} MB", f"{speedup}× faster", f"≥ {goal}×", met))
    return rows


PEERS = {"plain": ("plain loop", ("benchmarks/peer_plain.py, a plain PyTorch loop: one net after "
                                  "another, torch.manual_seed per job")),
         "optuna": ("Optuna", ("benchmarks/peer_optuna.py: Optuna's GridSampler over (lr, seed), "
                               "study.optimize(n_jobs=1), in-memory storage, the plain loop's job as objective"))}


def peer_rows(lrs: int, seeds: tuple[int, int], epochs: int, repeats: tuple[int, int]) -> list[Row]:
    """Row 7: row 6's two grids written with each peer, against hydrafit's vectorised sweep, every
    program a whole process timed in this run (benchmarks/peers.py). The goals are against the
    plain loop, the floor of what a user could write by hand; Optuna's ratio is context."""
    rows = []
    for n_seeds, rounds, (label, goal) in zip(seeds, repeats, ((48, 1.5), (480, 4))):
        times, jobs = peers.grid(LRS[:lrs], n_seeds, epochs, rounds), lrs * n_seeds
        ours_s, ours_mb = times["hydrafit"]
        how = f"whole runs, fastest of {rounds}" if rounds > 1 else "whole runs, one each"
        command = (f"`hydrafit-train -m hydra/launcher=vectorized optimizer.lr=<{lrs} values> "
                   f"seed=range(1,{n_seeds + 1}) ~callbacks.progress_bar` (row 6's command; every run "
                   "directory written)")
        for peer, (name, what) in PEERS.items():
            target, goal_text = f"7. Peers, {label} jobs: {name}", f"≥ {goal}×" if peer == "plain" else "context"
            compared = (f"s and peak MB, process start to exit with imports, {jobs} fits of {epochs} "
                        f"full-batch epochs ({how}): {what}, writing nothing, vs {command}")
            ours = f"{ours_s:.1f} s, {ours_mb:.0f} MB"
            if peer not in times:
                rows.append(Row(target, compared, "–", ours, "–", goal_text,
                                "not measured: optuna is not installed (the sweeps extra)"))
                continue
            base_s, base_mb = times[peer]
            ratio, met = judged(base_s / ours_s, goal, at_most=False)
            rows.append(Row(target, compared, f"{base_s:.1f} s, {base_mb:.0f} MB", ours,
                            f"{ratio}× faster", goal_text, met if peer == "plain" else "–"))
    return rows


def population_rows(lrs: list[str], seeds: int, shape_lrs: list[str], widths: list[str], shape_seeds: int,
                    epochs: int, repeats: int, common: list[str]) -> list[Row]:
    """Row 8 (benchmarks/populations.py): a sweep of the user's own CSV file and a grid of shapes,
    each one population, against the basic launcher; a single CSV run's epoch against the default
    run's."""
    csv = populations.own_data(lrs, seeds, common)
    (basic_s, basic_mb), (vec_s, vec_mb) = csv["basic"], csv["vectorized"]
    speedup, met = judged(basic_s / vec_s, 10, at_most=False)
    rows = [Row("8. Own data, 48 jobs", f"s and peak MB, `hydrafit-train -m dataset=csv dataset.path=temperature.csv "
                f"optimizer.lr=<{len(lrs)} values> seed=range(1,{seeds + 1})` ({csv['jobs']} jobs, standardised, "
                "20% validation split): basic launcher vs hydra/launcher=vectorized (both measured)",
                f"{basic_s:.1f} s, {basic_mb:.0f} MB", f"{vec_s:.1f} s, {vec_mb:.0f} MB", f"{speedup}× faster", "≥ 10×", met)]
    grid = populations.shapes(shape_lrs, widths, ["relu", "tanh"], shape_seeds, common)
    (slice_s, slice_mb), (vec_s, vec_mb) = grid["basic_slice"], grid["vectorized"]
    basic_s = slice_s * grid["seeds"]
    speedup, met = judged(basic_s / vec_s, 30, at_most=False)
    rows.append(Row("8. Shapes, 480 jobs", f"s and peak MB, `hydrafit-train -m optimizer.lr=<{len(shape_lrs)} values> "
                    f"model.hidden_dims={','.join(widths)} model.activation=relu,tanh seed=range(1,{shape_seeds + 1})` "
                    f"({grid['jobs']} jobs): basic launcher (extrapolated: its seed=1 slice, {slice_s:.1f} s, "
                    f"x {grid['seeds']}) vs hydra/launcher=vectorized",
                    f"{basic_s:.1f} s, {slice_mb:.0f} MB (the slice's)", f"{vec_s:.1f} s, {vec_mb:.0f} MB",
                    f"{speedup}× faster", "≥ 30×", met))
    default_ms, csv_ms = populations.single_csv(epochs, repeats)
    ratio, met = judged(csv_ms / default_ms, 1.5, at_most=True)
    rows.append(Row("8. Own data, one run", f"ms of fit an epoch (metrics.json's fit_seconds / epochs, fastest of "
                    f"{repeats}, alternated): `hydrafit-train` (128 points) vs the CSV run of temperature.csv "
                    "(292 training rows, standardised, 73 validated every epoch)",
                    f"{default_ms:.2f} ms", f"{csv_ms:.2f} ms", f"{ratio}× the default run's", "≤ 1.5×", met))
    return rows


def pbt_rows(members: int, seeds: list[int], epochs: int, interval: int) -> list[Row]:
    """Row 9 (benchmarks/pbt.py): PBT against a vectorised grid of as many members over the same
    lr range, on the default problem and a harder one: wall time (mean over the seeds of the
    whole procedure) and each seed's best / median / worst final truth/rmse."""
    rows = []
    for target in pbt.TARGETS:
        result = pbt.compare(target, members, seeds, epochs, interval)
        grid_s, pbt_s = (sum(r["seconds"] for r in result[k]) / len(seeds) for k in ("grid", "pbt"))
        spread = lambda runs: "; ".join("/".join(f"{v:.4f}" for v in r["rmse"]) for r in runs)
        ratio, met = judged(pbt_s / grid_s, 1.3, at_most=True)
        problem = "default problem" if target == "polynomial" else "`" + " ".join(pbt.TARGETS[target]) + "`"
        rows.append(Row(f"9. PBT vs grid, {target}", f"{members} members each; s (mean of {len(seeds)} seeds of the whole "
                        f"procedure) and final truth/rmse best/median/worst of the members, per seed "
                        f"(seed={','.join(map(str, seeds))}), {problem}: `hydra/launcher=vectorized "
                        f"optimizer.lr=<{members} values log-spaced in [1e-4, 1]>` vs `hparams_search=pbt "
                        f"hydra.sweeper.population={members}` (lr drawn in [1e-4, 1], log; {epochs} epochs, "
                        f"exploit/explore every {interval})",
                        f"{grid_s:.1f} s; {spread(result['grid'])}", f"{pbt_s:.1f} s; {spread(result['pbt'])}",
                        f"{ratio}× the grid's wall time", "≤ 1.3×", met))
    return rows


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else platform.processor() or device


def gpu_row(sizes: dict) -> Row:
    """Target 5: target 3 on CUDA, when there is a GPU; otherwise a row that says why not."""
    import torch

    if torch.cuda.is_available():
        return target3(**sizes, device="cuda")[0]
    return Row("5. GPU", "target 3 on CUDA against plain PyTorch on the same GPU", "–", "–", "–",
               "≥ 0.8×", "not measured: no GPU on this machine")


def plot_rows(epochs: int, repeats: int) -> list[Row]:
    """What the fit plot costs a default run, per TensorBoard image and for the final figure,
    and its share of a whole default run (target 2's figure, when it was measured)."""
    from benchmarks import in_process

    runs = in_process.plot_seconds(epochs, repeats)
    images = max(runs["images"] - 1, 1)  # TensorBoard images drawn during training
    per_image = (runs["default"] - runs["final_only"]) / images
    final = runs["final_only"] - runs["none"]
    cost = runs["default"] - runs["none"]
    whole = MEASURED.get("whole_run")
    share = f"+{cost:.2f} s = {cost / whole:.0%} of a default run" if whole else \
        f"+{cost:.2f} s = {cost / runs['default']:.0%} of train()"
    met = ("yes: " if whole and cost / whole < 0.5 else "") + \
        f"{per_image * 1e3:.0f} ms an image, {final * 1e3:.0f} ms the final figure + fit.png"
    return [Row("Fit plot", f"s, train() of a {epochs}-epoch default run: without FitPlot vs with "
                f"it ({runs['images']} TensorBoard images, the last also fit.png)",
                f"{runs['none']:.2f} s", f"{runs['default']:.2f} s", share,
                "not dominating; callbacks.fit_plot.n_images bounds it", met)]


def cli_rows(repeats: int) -> list[Row]:
    """`--help` and `--cfg job`, against what importing torch and Lightning alone costs."""
    res = processes.cli_answers(repeats)
    met = "no torch/Lightning import" if not res["heavy"] else "no: torch or Lightning imported"
    return [Row(f"`hydrafit-train {flag}`", "s, process start to exit: `python -c 'import torch, "
                "pytorch_lightning'` vs the command", f"{res['import']:.2f} s", f"{res[key]:.2f} s",
                f"{res[key] / res['import']:.2f}×", "Hydra answers alone", met)
            for key, flag in (("help", "--help"), ("cfg", "--cfg job"))]


def machine() -> str:
    """One line naming the machine and the versions the numbers were taken with."""
    import pytorch_lightning
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return (f"{os.cpu_count()} cores ({cpu}), torch {torch.__version__} "
            f"({torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}), pytorch-lightning {pytorch_lightning.__version__}, "
            f"Python {platform.python_version()}, {datetime.date.today()}")


def set_threads(n: int) -> None:
    """torch's intra-op threads for this process and, through OMP_NUM_THREADS, for the
    processes it times. With other work on the cores, torch's threads waiting for each other
    made the 1M-point loop up to 18x slower here, at random, baseline and hydrafit alike (a
    ratio of 2.1 once); one thread is within ~20% of two on a quiet machine for these sizes."""
    import torch

    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


def markdown(rows: list[Row], header: str) -> str:
    lines = [header, "", "| target | compared | baseline | hydrafit | ratio | goal | met |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.target} | {r.compared} | {r.baseline} | {r.hydrafit} | {r.ratio} | {r.goal} | {r.met} |"
              for r in rows]
    return "\n".join(lines) + "\n"


BENCHMARKS = {"t1": lambda s: [target1(**s["t1"])], "t2": lambda s: [target2(**s["t2"])],
              "t3": lambda s: target3(**s["t3"]), "t4": lambda s: [target4(**s["t4"])],
              "t5": lambda s: [gpu_row(s["t3"])], "plot": lambda s: plot_rows(**s["plot"]),
              "cli": lambda s: cli_rows(**s["cli"]), "overhead": lambda s: overhead_rows(**s["overhead"]),
              "vec": lambda s: vectorized_rows(**s["vec"]), "peers": lambda s: peer_rows(**s["peers"]),
              "pop": lambda s: population_rows(**s["pop"]), "pbt": lambda s: pbt_rows(**s["pbt"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every path runs")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated: " + ",".join(BENCHMARKS))
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the Markdown table goes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, here and in the "
                        "processes timed (default 1; 0: torch's own choice); see set_threads")
    args = parser.parse_args(argv)
    if args.threads:
        set_threads(args.threads)
    sizes, rows = QUICK if args.quick else FULL, []
    header = f"Measured by `make bench` on {machine()}" + (" (--quick: sizes too small to mean anything)" if args.quick else "")
    print(header, flush=True)
    for name in args.only.split(","):
        for row in BENCHMARKS[name](sizes):
            rows.append(row)
            print(f"{row.target}: baseline {row.baseline}, hydrafit {row.hydrafit}, ratio {row.ratio} "
                  f"(goal {row.goal}; met: {row.met})", flush=True)
    args.out.write_text(markdown(rows, header))
    print(f"table written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
