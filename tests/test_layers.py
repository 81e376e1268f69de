"""The package's shape: imports point one way (import-linter's contracts in pyproject.toml), no
module imports itself back through others, and the commands that answer without training import
no torch."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import BIN, REPO

# grimp, import-linter's graph builder, finds packages on sys.path: the editable install hides
# src/hydra_plugins from it, so the analysis reads src/ itself.
SOURCE = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def test_import_contracts_are_kept():
    proc = subprocess.run([str(BIN / "lint-imports")], cwd=REPO, env=SOURCE, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout


def test_no_import_cycle_among_project_modules():
    """Counting imports inside functions too: each strongly connected group is one module."""
    code = """
import grimp, sys
graph = grimp.build_graph("hydrafit", "hydra_plugins")
ours = sorted(m for m in graph.modules if m.startswith(("hydrafit", "hydra_plugins.hydrafit_sweeper")))
edges = {m: sorted(n for n in graph.find_modules_directly_imported_by(m) if n in ours and n != m) for m in ours}
index, low, stack, on, cycles = {}, {}, [], set(), []
def visit(m):
    index[m] = low[m] = len(index); stack.append(m); on.add(m)
    for n in edges[m]:
        if n not in index:
            visit(n); low[m] = min(low[m], low[n])
        elif n in on:
            low[m] = min(low[m], index[n])
    if low[m] == index[m]:
        group = []
        while True:
            n = stack.pop(); on.discard(n); group.append(n)
            if n == m:
                break
        if len(group) > 1:
            cycles.append(sorted(group))
sys.setrecursionlimit(10000)
for m in ours:
    if m not in index:
        visit(m)
print(len(ours), cycles)
"""
    proc = subprocess.run([sys.executable, "-c", code], env=SOURCE, capture_output=True, text=True, timeout=120,
                          check=True)
    count, cycles = proc.stdout.split(" ", 1)
    assert int(count) > 40 and cycles.strip() == "[]", proc.stdout


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"]], ids=["help", "cfg"])
def test_commands_that_train_nothing_import_no_torch(args, tmp_path):
    code = ("import runpy, sys; sys.argv = ['hydrafit-train', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('hydrafit.cli.train', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'pytorch_lightning' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.stderr.strip().splitlines()[-1] == "False False", proc.stderr[-2000:]


def test_importing_hydrafit_imports_no_torch():
    proc = subprocess.run([sys.executable, "-c", "import hydrafit, sys; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "False"


def test_no_module_is_longer_than_400_lines():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "src").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_private_names_of_libraries_are_used_only_in_compat():
    """Reaches into Hydra's, OmegaConf's, Lightning's, TensorBoard's or atexit's private names sit
    in hydrafit/compat (each module says why and which versions it was checked against)."""
    import re

    pattern = re.compile(r"hydra\._internal|omegaconf\._utils|_checkpoint_connector|atexit\._|_get_file_writer"
                         r"|_return_value|_apply_overrides_to_config|\b_every_n_|_last_global_step_saved"
                         r"|_train_time_interval|record_writer\.masked_crc32c\s*=|_valid_parameters")
    found = [f"{p.relative_to(REPO)}:{i}" for p in (REPO / "src").rglob("*.py") if "compat" not in p.parts
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found
