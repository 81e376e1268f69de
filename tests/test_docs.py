"""The README's and the docs pages' commands, run as written (shortened with appended overrides),
so they cannot drift; the site builds with `mkdocs build --strict`; the README stays short and
neither it nor the docs tell development history (that is CHANGELOG.md's).

Each page's commands are read from the page where they live: `page("sweeps.md")`, then
`section(text, "title")` for one `## title` of it, then `commands(...)` for the lines of its
```bash blocks. The commands of the sweep, search, vectorised, own-data, scaling-out and
performance pages are run by those features' own tests (see COVERED below).
"""
from __future__ import annotations

import csv
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import hydrafit
from conftest import BIN, REPO, read_metrics, run_cli

DOCS = REPO / "docs"
README = (REPO / "README.md").read_text()
# Appended to each training command so the suite stays fast; later overrides win in Hydra.
SHORTEN = ["trainer.max_epochs=2", "callbacks.fit_plot.n_images=1"]
SHORT_SWEEP = ["trainer.max_epochs=2", "callbacks.fit_plot.n_images=0", "logger=none"]  # fit.png: at the end


def page(name: str) -> str:
    """The text of docs/<name> ("README.md": the README)."""
    return README if name == "README.md" else (DOCS / name).read_text()


def section(text: str, title: str) -> str:
    """The text of one `## title` section of a page, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section '## {title}'"
    return match.group(1)


def commands(text: str) -> list[str]:
    """Command lines of the ```bash blocks in `text`, without trailing comments."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    return lines


# --- README: Quick start -----------------------------------------------------------------------


def test_quick_start_is_make_train_and_make_test_and_ci_runs_the_same():
    assert commands(section(README, "Quick start").split("### Without make")[0]) == ["make train", "make test"]
    assert commands(page("index.md")) == ["make train", "make test"]  # the overview repeats them
    assert commands(page("development.md"))[0] == "make test"
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert ".ci/run" in section(README, "Quick start")  # the README says what CI runs


def test_make_train_runs_the_default_experiment(tmp_path):
    venv = REPO / ".venv"
    if Path(sys.prefix).resolve() != venv.resolve() or not (venv / ".installed").exists():
        pytest.skip("the suite runs outside the Makefile's .venv; `make train` would reinstall")
    run = tmp_path / "run"
    subprocess.run(["make", "-s", "train", f"ARGS=hydra.run.dir={run} {' '.join(SHORTEN)}"],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    assert read_metrics(run)["status"] == "completed"


def test_without_make_block():
    text = section(README, "Quick start").split("### Without make")[1]
    lines = commands(text)
    assert lines[0] == 'pip install -e ".[dev]"' and "dev = [" in (REPO / "pyproject.toml").read_text()
    assert lines[1] == "hydrafit-train"  # run for real by the default_run fixture
    module = re.search(r"hydrafit-train +# same as: python -m ([\w.]+)", text)[1]
    proc = subprocess.run([sys.executable, "-m", module, "--cfg", "job"],
                          capture_output=True, text=True, check=True)
    assert "max_epochs: 250" in proc.stdout


# --- single runs: README "A run with overrides", running.md "Overrides", tracking.md "MLflow" ----

README_TRAIN_LINES = commands(section(README, "A run with overrides"))
TRAIN_LINES = list(dict.fromkeys(  # in order, each once: the README's line is also running.md's
    c for c in README_TRAIN_LINES + commands(section(page("running.md"), "Overrides"))
    + commands(section(page("tracking.md"), "MLflow")) if c.startswith("hydrafit-train")))


def test_readme_run_with_overrides_is_among_the_lines_run():
    assert README_TRAIN_LINES and all(line.startswith("hydrafit-train ") for line in README_TRAIN_LINES)
    assert set(README_TRAIN_LINES) <= set(TRAIN_LINES)


@pytest.mark.parametrize("line", TRAIN_LINES)
def test_running_experiments_commands(tmp_path, line):
    args = shlex.split(line)[1:]
    if args[:1] == ["--cfg"]:
        assert "_target_: hydrafit.models.mlp" in run_cli(*args, cwd=tmp_path).stdout
        return
    run = tmp_path / "run"
    run_cli(*args, *SHORTEN, f"hydra.run.dir={run}", cwd=tmp_path)
    assert read_metrics(run)["status"] == "completed"
    for override in args:  # the run used what the page says
        key, value = override.split("=", 1)
        if "." in key and "max_epochs" not in key:
            assert value.strip("[]").split(",")[0] in (run / ".hydra" / "config.yaml").read_text()


def test_tensorboard_command_reads_a_run(default_run):
    for text in section(README, "TensorBoard"), section(page("tracking.md"), "TensorBoard"):
        assert commands(text) == ["tensorboard --logdir outputs"]
    # --inspect reads the event files like the server does, without opening a port.
    proc = subprocess.run([str(BIN / "tensorboard"), "--inspect", "--logdir", str(default_run)],
                          capture_output=True, text=True, timeout=120)
    assert "train/loss" in proc.stdout and "fit" in proc.stdout


def test_when_a_run_goes_wrong_commands(tmp_path):
    """running.md's four commands, shortened: diverge, interruptible long run, resume, train longer."""
    lines = commands(section(page("running.md"), "When a run goes wrong"))
    assert [shlex.split(line)[1:] for line in lines] == [
        ["optimizer=sgd", "optimizer.lr=100"], ["trainer.max_epochs=5000"],
        ["resume=outputs/runs/<date>_<time>"], ["resume=outputs/runs/<date>_<time>", "trainer.max_epochs=8000"]]
    diverged = tmp_path / "diverged"
    proc = run_cli(*shlex.split(lines[0])[1:], f"hydra.run.dir={diverged}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and read_metrics(diverged)["status"] == "diverged"
    run = tmp_path / "outputs" / "runs" / "a_run"
    hydrafit.fit(["trainer.max_epochs=30", "callbacks.fit_plot.n_images=1"], run_dir=run)  # line 2, shortened
    for line, epochs in ((lines[2], 30), (lines[3], 40)):
        args = [a.replace("outputs/runs/<date>_<time>", str(run)).replace("8000", "40")
                for a in shlex.split(line)[1:]]
        run_cli(*args, cwd=tmp_path)
        assert read_metrics(run)["epochs"] == epochs and read_metrics(run)["status"] == "completed"


# --- Python: python-api.md and README "From Python" --------------------------------------------


def test_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """In-process, as in a notebook (a new process would only add torch's import to the test)."""
    [code] = re.findall(r"```python\n(.*?)```", page("python-api.md"), re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/python-api.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "optimizer.lr must be > 0, got -1"  # what its comment says
    [run] = (tmp_path / "outputs" / "runs").iterdir()
    stated = float(re.search(r'result.metrics\["truth/rmse"\] +# ([\d.]+)', code)[1])
    assert read_metrics(run)["truth/rmse"] == pytest.approx(stated, rel=0.05)  # across CPUs


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    [code] = re.findall(r"```python\n(.*?)```", section(README, "From Python"), re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md, From Python", "exec"), {})
    [run] = (tmp_path / "outputs" / "runs").iterdir()
    metric, run_dir = capsys.readouterr().out.split()
    assert Path(run_dir).resolve() == run.resolve() and (run / "checkpoints" / "last.ckpt").exists()
    assert float(metric) == pytest.approx(read_metrics(run)["truth/rmse"], rel=1e-6)
    stated = float(re.search(r'print\(result.metrics\["truth/rmse"\].*# ([\d.]+)', code)[1])
    assert float(metric) == pytest.approx(stated, rel=0.05)  # across CPUs


# --- README sweeps: "A sweep", "A vectorised sweep" ---------------------------------------------

README_SWEEPS = commands(section(README, "A sweep")) + commands(section(README, "A vectorised sweep"))


def test_readme_sweeps_are_the_docs_pages_sweeps():
    assert len(README_SWEEPS) == 2
    assert README_SWEEPS[0] in commands(page("sweeps.md"))
    assert README_SWEEPS[1] in commands(page("vectorised.md")) and "hydra/launcher=vectorized" in README_SWEEPS[1]


@pytest.mark.parametrize("line", README_SWEEPS)
def test_readme_sweep_runs(tmp_path, line):
    """Each README sweep, 2 epochs a job: every job completes, as many as its comment says."""
    args = shlex.split(line)
    assert args[:2] == ["hydrafit-train", "-m"], args
    n_jobs = int(re.search(re.escape(line) + r" +# (\d+) jobs", README)[1])
    sweep = tmp_path / "sweep"
    proc = run_cli(*args[1:], *SHORT_SWEEP, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    with open(sweep / "summary.csv", newline="") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["completed"] * n_jobs
    assert (sweep / "summary.md").exists() and (sweep / "sweep.png").exists()
    if "hydra/launcher=vectorized" in line:  # one population, one fit, as its comment says
        assert f"vectorized: {n_jobs} jobs -> 1 population of {n_jobs}" in proc.stdout + proc.stderr


# --- every command is somebody's -----------------------------------------------------------------

# Page: the `## ` sections whose commands a test runs (None: the whole page), and which test.
COVERED = {
    "README.md": ["Quick start", "A run with overrides", "A sweep", "A vectorised sweep", "TensorBoard"],  # here
    "index.md": None,  # the quick start's two commands (here)
    "running.md": ["Overrides", "When a run goes wrong"],  # here
    "tracking.md": ["TensorBoard", "MLflow"],  # here
    "python-api.md": [],  # a python block (here)
    "own-data.md": ["Walk-through"],  # tests/test_eval.py, tests/test_own_data.py
    "sweeps.md": None,  # tests/test_sweeps.py lists these three pages' commands and runs them with
    "search.md": None,  # tests/test_optuna.py, tests/test_sweep_seeds.py, tests/test_population.py
    "pbt.md": None,  # tests/test_pbt.py
    "vectorised.md": None,
    "scaling-out.md": None,  # tests/test_scale_out.py
    "performance.md": None,  # tests/test_benchmarks.py: the runner's rows and flags, make bench's target
    "development.md": ["Docs"],  # mkdocs build --strict (here)
}
NOT_RUN = {  # installs, servers and the suite itself
    'pip install -e ".[dev]"', 'pip install "hydrafit[mlflow]"', "pip install mlflow",
    "mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db", ".venv/bin/mkdocs serve",
    "make test", ".venv/bin/python -m pytest tests/test_configs.py -q",
}


def test_every_docs_command_is_run_by_a_test():
    assert sorted(COVERED) == sorted(["README.md", *(p.name for p in DOCS.glob("*.md"))]), \
        "a new page: say in COVERED which test runs its commands"
    for name, titles in COVERED.items():
        text = page(name)
        covered = commands(text) if titles is None else [c for t in titles for c in commands(section(text, t))]
        uncovered = [c for c in commands(text) if c not in covered and c not in NOT_RUN]
        assert not uncovered, f"{name}: commands no test runs: {uncovered}"


# --- the site, the README's size, no history -----------------------------------------------------


def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the dev extra installs mkdocs and mkdocs-material)")
    assert ".venv/bin/mkdocs build --strict" in commands(section(page("development.md"), "Docs"))
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for name in COVERED:
        if name != "README.md":
            built = "index.html" if name == "index.md" else f"{name[:-3]}/index.html"
            assert (tmp_path / "site" / built).exists(), built


def test_readme_links_and_images_exist():
    targets = re.findall(r"\]\(((?:docs/|CHANGELOG)[^)#]*)", README)
    assert targets
    for target in targets:
        assert (REPO / target).exists(), target


def test_readme_is_at_most_200_lines():
    assert len(README.splitlines()) <= 200


# The check of `grep -rnIiE '<HISTORY>' README.md docs | grep -viE '<LINKS>'`: no named work
# periods and no issue numbers (other projects' issues, "Lightning #15737", are links), and no
# phrases that describe a change instead of what is.
HISTORY = re.compile(r"\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|this|last|next"
                     r"|previous|earlier) session\b|\bissues? #?[0-9]+\b", re.I)
LINKS = re.compile(r"github|lightning #|hydra #|ray #|optuna #", re.I)
CHANGE_PHRASES = re.compile(r"\bas before\b|before this change|no GPU was lent|what got hydrafit there"
                            r"|target \d+ of issue", re.I)


def test_readme_and_docs_tell_no_development_history():
    found = []
    for path in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if (HISTORY.search(line) and not LINKS.search(line)) or CHANGE_PHRASES.search(line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, "history belongs in CHANGELOG.md:\n" + "\n".join(found)


def test_performance_page_shows_the_latest_results_and_their_machine():
    """docs/performance.md carries benchmarks/results.md's table (figures, ratios) and the
    conditions it was measured under."""
    text = page("performance.md")
    results = (REPO / "benchmarks" / "results.md").read_text()
    for line in results.splitlines():
        if line.startswith("| ") and not line.startswith(("| target", "|---")):
            target, _, baseline, ours, ratio, *_ = [cell.strip() for cell in line.strip("|").split(" | ")]
            row = next((row for row in text.splitlines() if row.startswith(f"| {target} |")), None)
            assert row and f"| {baseline} | {ours} | {ratio} |" in row, target
    # the conditions results.md states (CPU, core count, versions, date) are on the page too
    machine, header = section(text, "The machine"), results.splitlines()[0]
    conditions = re.findall(r"\d+ cores|\((?:AMD|Intel)[^)]*\)|(?:torch|pytorch-lightning|Python) \d[\d.]*\d"
                            r"|\b20\d\d-\d\d-\d\d\b", header)
    assert len(conditions) >= 5, header
    for condition in conditions:
        assert condition in machine, condition
