"""A search shared by two workers through a real PostgreSQL server (docs/scaling-out.md, "One
machine or several: the study's storage"): the docs' `hydra.sweeper.join=true` command with the
page's `hydra.sweeper.storage=postgresql://...` URL, each worker in a sweep directory of its
own, both running at once; the study is then read back with Optuna's own client.

Run: make test-cluster   (this file: about 30 s on 2 cores, after the server's ~1 s start)
"""
from __future__ import annotations

import re
import subprocess
import sys

import optuna
import pytest

from conftest import BIN, REPO
from test_sweeps import readme, summary_rows

N_TRIALS = 6
FAST = ["trainer.max_epochs=5", "callbacks.fit_plot.n_images=0", "logger=none"]


def docs_storage(url: str) -> str:
    """The docs' storage override, with the page's placeholder URL replaced by `url`."""
    text = (REPO / "docs" / "scaling-out.md").read_text()
    override = re.search(r"`(hydra\.sweeper\.storage=postgresql://[^`]+)`", text)[1]
    placeholder = override.split("=", 1)[1]
    assert placeholder.startswith("postgresql://") and "+" not in placeholder.split(":")[0]  # no driver named
    return override.replace(placeholder, url)


@pytest.fixture(scope="module")
def workers(postgres_url, tmp_path_factory):
    """Two workers of one search started together, each with its own sweep directory; returns
    (the sweep directories, the workers' stdout)."""
    cwd = tmp_path_factory.mktemp("workers")
    args = readme("hydra.sweeper.join=true")  # hydrafit-train -m hparams_search=optuna hydra.sweeper.join=true ...
    sweep_dirs = [cwd / f"worker-{i}" for i in range(2)]
    procs = [subprocess.Popen([str(BIN / args[0]), *args[1:], *FAST, docs_storage(postgres_url),
                               f"hydra.sweeper.n_trials={N_TRIALS}", f"hydra.sweep.dir={d}"],
                              cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for d in sweep_dirs]
    outputs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        outputs.append(stdout)
    return sweep_dirs, outputs


def test_two_workers_share_one_study_on_the_server(workers, postgres_url):
    sweep_dirs, outputs = workers
    study = optuna.load_study(study_name="hydrafit", storage=postgres_url)
    assert type(study._storage).__name__ in ("RDBStorage", "_CachedStorage")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == N_TRIALS  # what the workers asked for, in all
    # anything else is a surplus trial a worker asked for while the other finished the last one
    assert all(t.user_attrs.get("surplus") for t in study.trials if t not in complete)
    assert len({tuple(sorted(t.params.items())) for t in complete}) == N_TRIALS  # no trial run twice
    ran_in = {t.number: t.user_attrs["job_dir"] for t in complete}
    per_worker = [sorted(n for n, d in ran_in.items() if d.startswith(str(s.resolve()))) for s in sweep_dirs]
    assert sorted(per_worker[0] + per_worker[1]) == sorted(ran_in)  # each trial in one worker's dir
    assert all(per_worker), f"a worker ran no trial: {per_worker}"  # both took part
    print("trials per worker:", per_worker, file=sys.stderr)

    # each worker's summary lists the whole study, the other worker's trials too
    for sweep_dir, stdout in zip(sweep_dirs, outputs):
        rows = summary_rows(sweep_dir)
        assert sorted((int(r["job"]), r["status"]) for r in rows) == [(n, "completed") for n in sorted(ran_in)]
        assert (sweep_dir / "summary.md").is_file()
        assert f"{N_TRIALS} jobs: {N_TRIALS} completed" in stdout
