"""The plain PyTorch baselines: the same math as hydrafit's default run, with no framework.

Targets 1 and 3 divide hydrafit's figure by these, measured in the same process. The data is
built as hydrafit.data builds it (linspace grid + Gaussian noise, tensors in memory); batches
are slices of a shuffled permutation, the fastest way to feed a small model from memory.
"""
from __future__ import annotations

import time

import torch
from torch import nn


def seed_data(n_points: int = 128, seed: int = 12345) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x^2 - 2x + 0.1 noise on an even grid over [-2, 2], as dataset=polynomial."""
    x = torch.linspace(-2, 2, n_points).unsqueeze(1)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return x, x**2 - 2 * x + 0.1 * noise


def seed_model() -> tuple[nn.Module, torch.optim.Optimizer]:
    """The default model=mlp (1 -> 16 relu -> 1) and optimizer=adam (lr 0.03)."""
    net = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
    return net, torch.optim.Adam(net.parameters(), lr=0.03)


def train(x, y, epochs: int, batch_size: int | None = None, seed: int = 0) -> float:
    """Seconds for `epochs` epochs of MSE + Adam over (x, y): forward, loss, backward, step per
    batch; each epoch slices a fresh random permutation (or takes the full batch)."""
    torch.manual_seed(seed)
    net, optimizer = seed_model()
    net.to(x.device)
    n, size = len(x), batch_size or len(x)
    synchronize(x.device)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n, device=x.device) if size < n else None
        for first in range(0, n, size):
            xb, yb = (x, y) if order is None else (x[order[first:first + size]], y[order[first:first + size]])
            loss = nn.functional.mse_loss(net(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    synchronize(x.device)
    return time.perf_counter() - start


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timing covers it (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_ms_per_epoch(short: int, long: int, repeats: int) -> float:
    """Target 1's baseline: ms per full-batch epoch of the seed, from the fastest of `repeats`
    runs of `short` and of `long` epochs (the same two-run difference hydrafit gets)."""
    x, y = seed_data()
    train(x, y, 20)  # warm-up: first-call allocations and lazy initialisation
    fastest = {n: min(train(x, y, n) for _ in range(repeats)) for n in (short, long)}
    return (fastest[long] - fastest[short]) / (long - short) * 1e3


def large_samples_per_second(n_points: int, batch_size: int, repeats: int, device: str = "cpu") -> float:
    """Target 3's baseline: training samples per second over one epoch of `n_points`, in
    shuffled mini-batches sliced from tensors on `device` (best of `repeats`)."""
    x, y = (t.to(device) for t in seed_data(n_points))
    train(x[:batch_size * 4], y[:batch_size * 4], 1, batch_size)  # warm-up
    return n_points / min(train(x, y, 1, batch_size) for _ in range(repeats))
