"""hparams_search=optuna with hydra/launcher=vectorized: each batch of hydra.sweeper.n_jobs trials
trains as one population (its widths, depths and activations included), each member reporting to
its own trial and pruned alone, as the same search gets them with the basic launcher.

Run: .venv/bin/python -m pytest tests/test_optuna_populations.py -q   (about 30 s on 2 cores)
"""
from __future__ import annotations

import optuna
import pytest

from conftest import read_metrics, run_cli

SEARCH = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=16", "hydra.sweeper.n_jobs=8",
          "hydra.sweeper.pruner=median", "trainer.max_epochs=60", "callbacks.optuna_pruning.every_n_epochs=10",
          "callbacks.fit_plot.n_images=0", "~callbacks.progress_bar"]


@pytest.fixture(scope="module")
def searches(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("optuna_populations")
    out = {}
    for launcher in ("vectorized", "basic"):
        proc = run_cli(*SEARCH, f"hydra/launcher={launcher}", f"hydra.sweep.dir={cwd / launcher}", cwd=cwd)
        study = optuna.load_study(study_name="hydrafit", storage=f"sqlite:///{cwd / launcher / 'optuna.db'}")
        out[launcher] = (proc.stdout + proc.stderr, study.trials)
    return cwd, out


def test_each_batch_of_trials_is_one_population(searches):
    _, out = searches
    log = out["vectorized"][0]
    assert log.count("vectorized: 8 jobs -> 1 population of 8") == 2, log[-3000:]
    assert "runs alone" not in log


def test_members_are_pruned_as_the_same_trials_run_alone(searches):
    """The same trials (TPE, seeded), the same intermediate values within 1e-5 relative, the same
    pruned trials, each pruned job's directory as a pruned single run's."""
    cwd, out = searches
    (_, vec), (_, basic) = out["vectorized"], out["basic"]
    assert [t.params for t in vec] == [t.params for t in basic]
    assert [t.state for t in vec] == [t.state for t in basic]
    pruned = [t.number for t in vec if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "the median pruner pruned nothing: the test shows nothing"
    for mine, alone in zip(vec, basic):
        assert mine.intermediate_values.keys() == alone.intermediate_values.keys()
        for epoch, value in mine.intermediate_values.items():
            assert value == pytest.approx(alone.intermediate_values[epoch], rel=1e-5), (mine.number, epoch)
    for n in pruned:
        metrics = read_metrics(cwd / "vectorized" / str(n))
        assert metrics["status"] == "pruned" and "pruned by Optuna at epoch" in metrics["error"]
        assert metrics["epochs"] == max(vec[n].intermediate_values)
        assert (cwd / "vectorized" / str(n) / "checkpoints" / "last.ckpt").is_file()
