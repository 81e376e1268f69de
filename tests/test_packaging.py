"""A regular (non-editable) install finds its configs from any directory: they ship in the wheel."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile

from conftest import REPO


def test_wheel_ships_configs_and_runs_from_elsewhere(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("hydrafit-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(site)
    repo_yaml = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    assert {f"hydrafit/conf/{name}" for name in repo_yaml} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hydrafit-train = hydrafit.cli.train:entry" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # The unpacked wheel first on sys.path, run from a directory with no conf/ in sight.
    code = "import hydrafit, runpy, sys; print(hydrafit.__file__, file=sys.stderr); " \
           "sys.argv = ['hydrafit-train', '--cfg', 'job', 'model=polynomial']; " \
           "runpy.run_module('hydrafit.cli.train', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(site)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert str(site) in proc.stderr  # really the installed copy, not the source tree
    assert "_target_: hydrafit.models.polynomial" in proc.stdout


def test_build_prints_no_warning_and_twine_accepts_it(tmp_path):
    """`python -m build` (sdist and wheel) says nothing about packages left out, and the
    distributions pass `twine check`."""
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warned = re.findall(r"\w*Warning: .*", proc.stdout + proc.stderr)  # BuildBackendWarning, SetuptoolsDeprecationWarning
    assert not warned, warned[:5]
    dists = sorted(str(p) for p in tmp_path.iterdir())
    assert len(dists) == 2, dists
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *dists],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def test_editable_build_prints_no_warning(tmp_path):
    """What `pip install -e .` (make install) builds: setuptools' editable wheel, without a word
    (a plain src/ layout is a path entry; conf/ is reached through src/hydrafit/conf)."""
    code = f"import setuptools.build_meta as backend; print(backend.build_editable({str(tmp_path)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warned = re.findall(r"\w*Warning: .*", proc.stdout + proc.stderr)
    assert not warned, warned[:5]
    (wheel,) = tmp_path.glob("hydrafit-*.whl")
    with zipfile.ZipFile(wheel) as archive:  # a path entry for src/, no import hook
        assert any(n.endswith(".pth") for n in archive.namelist())
        assert not any("finder" in n for n in archive.namelist()), archive.namelist()
