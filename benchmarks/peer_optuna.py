"""Row 7's Optuna peer: the same lr x seed grid as benchmarks/peer_plain.py, as an Optuna user
writes it: GridSampler over (lr, seed), one process, n_jobs=1, in-memory storage, writing no
files; the objective is the plain loop's one job. Timed as a whole process by benchmarks/peers.py.
Run: python benchmarks/peer_optuna.py EPOCHS LR,LR,... N_SEEDS
"""
import sys

import optuna

# the plain peer's job, so that both fit the same nets; a script's own folder is on sys.path
from peer_plain import fit

epochs, lrs, n_seeds = int(sys.argv[1]), [float(v) for v in sys.argv[2].split(",")], int(sys.argv[3])


def objective(trial: optuna.Trial) -> float:
    return fit(trial.suggest_categorical("lr", lrs), trial.suggest_int("seed", 1, n_seeds), epochs)


if __name__ == "__main__":
    sampler = optuna.samplers.GridSampler({"lr": lrs, "seed": list(range(1, n_seeds + 1))})
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(objective, n_trials=len(lrs) * n_seeds, n_jobs=1)
    print(f"{len(study.trials)} trials; best: {study.best_params}, truth/rmse {study.best_value:.4f}")
