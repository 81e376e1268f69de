"""Row 7's plain PyTorch peer: an lr x seed grid of the default experiment as a user writes it
with no framework, one net after another in one process, writing no files. Timed as a whole
process by benchmarks/peers.py. Run: python benchmarks/peer_plain.py EPOCHS LR,LR,... N_SEEDS
"""
import sys

import torch
from torch import nn


def fit(lr: float, seed: int, epochs: int) -> float:
    """One job: the Lux tutorial's data and net under `seed` (noise and initial weights, as
    hydrafit's `seed` sets both), `epochs` full-batch Adam steps on MSE; returns the fit's RMSE
    against the noiseless curve (hydrafit's default optimized_metric, truth/rmse)."""
    torch.manual_seed(seed)
    x = torch.linspace(-2, 2, 128).unsqueeze(1)
    truth = x**2 - 2 * x
    y = truth + 0.1 * torch.randn(x.shape)
    net = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        loss = nn.functional.mse_loss(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return nn.functional.mse_loss(net(x), truth).sqrt().item()


if __name__ == "__main__":
    epochs, lrs, n_seeds = int(sys.argv[1]), [float(v) for v in sys.argv[2].split(",")], int(sys.argv[3])
    rmse = {(lr, seed): fit(lr, seed, epochs) for lr in lrs for seed in range(1, n_seeds + 1)}
    lr, seed = min(rmse, key=rmse.get)
    print(f"{len(rmse)} fits; best: lr={lr} seed={seed}, truth/rmse {rmse[lr, seed]:.4f}")
