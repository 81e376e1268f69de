"""Smoke tests of benchmarks/: every benchmark path runs at tiny sizes, so `make bench` cannot rot.

No timing is asserted (the machine may be busy); only that each path produces its table row.
Run: .venv/bin/python -m pytest tests/test_benchmarks.py -q
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROWS = {"t1": ["1. Seed, per epoch"], "t2": ["2. Whole default run"], "t3": ["3. Large data", "3. Large data: one step per batch", "3. Large data: Lightning floor"],
        "t4": ["4. Sweep"], "t5": ["5. GPU"], "plot": ["Fit plot"],
        "cli": ["`hydrafit-train --help`", "`hydrafit-train --cfg job`"],
        "overhead": ["Sweep bookkeeping, 10 jobs", "Sweep bookkeeping, 100 jobs"],
        "vec": ["6. Vectorised sweep, 48 jobs", "6. Vectorised sweep, 480 jobs"],
        "peers": [f"7. Peers, {n} jobs: {peer}" for n in (48, 480) for peer in ("plain loop", "Optuna")],
        "pop": ["8. Own data, 48 jobs", "8. Shapes, 480 jobs", "8. Own data, one run"],
        "pbt": ["9. PBT vs grid, polynomial", "9. PBT vs grid, expression"]}


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory) -> tuple[subprocess.CompletedProcess, str]:
    """`make bench BENCH_ARGS=--quick`, every benchmark in one runner process (each runner
    imports torch and Lightning: ~4 s a process here), and the table it wrote."""
    out = tmp_path_factory.mktemp("bench") / "results.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--only", ",".join(ROWS),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    return proc, out.read_text() if out.exists() else ""


@pytest.mark.parametrize("only", list(ROWS))
def test_benchmark_path_runs_and_writes_its_row(only, quick_bench):
    proc, table = quick_bench
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| target | compared | baseline | hydrafit | ratio | goal | met |" in table
    for row in ROWS[only]:
        line = next(line for line in table.splitlines() if line.startswith(f"| {row} |"))
        assert line.count("|") == 8, line  # seven filled cells
        assert row in proc.stdout  # printed as it was measured


def cells(table: str, target: str) -> list[str]:
    """The seven cells of the table's row for `target`."""
    line = next(line for line in table.splitlines() if line.startswith(f"| {target} |"))
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def test_peers_rows_compare_whole_processes_of_the_same_grid(quick_bench):
    """Row 7's fields (not its timings): each peer's time and memory against the vectorised
    sweep's on the same grid, the ratio as row 6 writes it, a goal against the plain loop only."""
    proc, table = quick_bench
    assert proc.returncode == 0, proc.stderr[-3000:]
    figure, ratio = r"\d+\.\d s, \d+ MB", r"\d+\.\d\d× faster"
    for n, goal in ((48, "≥ 1.5×"), (480, "≥ 4×")):
        plain = cells(table, f"7. Peers, {n} jobs: plain loop")
        optuna = cells(table, f"7. Peers, {n} jobs: Optuna")
        assert "benchmarks/peer_plain.py" in plain[1] and "benchmarks/peer_optuna.py" in optuna[1]
        if importlib.util.find_spec("optuna") is None:  # the sweeps extra is not installed
            assert optuna[6].startswith("not measured: optuna is not installed")
            optuna = None
        for row in filter(None, (plain, optuna)):
            assert "hydra/launcher=vectorized" in row[1] and "start to exit" in row[1]
            assert re.fullmatch(figure, row[2]) and re.fullmatch(figure, row[3]), row
            assert re.fullmatch(ratio, row[4]), row
        assert plain[5] == goal and plain[6] in ("yes", "no")
        if optuna:
            assert plain[3] == optuna[3]  # one hydrafit sweep, timed once, for both peers
            assert optuna[5:] == ["context", "–"]


def test_peer_scripts_fit_the_same_grid():
    """The plain loop and Optuna's study run the same fits: same best job, same metric."""
    pytest.importorskip("optuna")  # the sweeps extra
    args = ["5", "0.01,0.03", "2"]  # epochs, lrs, seeds: 4 fits
    out = [subprocess.run([sys.executable, str(REPO / "benchmarks" / f"peer_{peer}.py"), *args],
                          capture_output=True, text=True, check=True, timeout=120).stdout
           for peer in ("plain", "optuna")]
    assert out[0].startswith("4 fits;") and out[1].startswith("4 trials;")
    plain = re.search(r"lr=([\d.]+) seed=(\d+), truth/rmse ([\d.]+)", out[0]).groups()
    optuna = re.search(r"'lr': ([\d.]+), 'seed': (\d+)}, truth/rmse ([\d.]+)", out[1]).groups()
    assert plain == optuna


def test_help_and_cfg_do_not_import_torch():
    """What the `cli` row reports, checked directly: Hydra answers without torch or Lightning."""
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.processes import imports_heavy
    finally:
        sys.path.remove(str(REPO))
    assert not imports_heavy(["--help"])
    assert not imports_heavy(["--cfg", "job"])
    # the control: a real (one-epoch) run is seen importing them
    assert imports_heavy(["trainer.max_epochs=1", "callbacks=none", "logger=none"])


def test_readme_performance_section_has_every_row_and_working_commands():
    """The README shows a table with every row the runner writes, and its commands exist."""
    section = (REPO / "docs" / "performance.md").read_text()
    assert "| target | compared | baseline | hydrafit | ratio | goal | met |" in section
    for rows in ROWS.values():
        for row in rows:
            assert f"| {row} |" in section, row
    assert "\nbench: install\n" in (REPO / "Makefile").read_text()
    usage = subprocess.run([sys.executable, "-m", "benchmarks.run", "--help"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout
    for flag in ("--only", "--quick", "--out"):
        assert flag in usage
