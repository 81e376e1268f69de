"""A population's batches: data.TensorBatches for stacked members, each member's points in the
order its single run draws them (hydrafit.engine.population)."""
from __future__ import annotations

import math

import torch

from hydrafit.data import epoch_order


class MemberSteps:
    """A Lightning batch of a population: consecutive mini-batch steps, each member's points
    taken in its own order (`order`: [members, points] indexes), or the full batch once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor | None = None, batch_size: int = 0):
        self.x, self.y, self.order, self.batch_size = x, y, order, batch_size

    def __len__(self) -> int:
        return 1 if self.order is None else math.ceil(self.order.shape[1] / self.batch_size)

    def __iter__(self):
        if self.order is None:
            yield self.x, self.y
            return
        for start in range(0, self.order.shape[1], self.batch_size):
            idx = self.order[:, start:start + self.batch_size].unsqueeze(-1)
            yield self.x.gather(1, idx), self.y.gather(1, idx)


class PopulationBatches:
    """data.TensorBatches for a population: x, y are [members, points, 1]; each member's epoch
    order is the one its single run draws (data.epoch_order with its own seed)."""

    batch_sampler = None

    def __init__(self, x, y, batch_size: int | None, seeds: list[int], steps_per_batch: int):
        self.x, self.y, self.seeds, self.epoch, self.steps_per_batch = x, y, seeds, 0, steps_per_batch
        n = x.shape[1]
        self.full_batch = batch_size is None or batch_size >= n
        self.batch_size = n if self.full_batch else batch_size

    @property
    def sampler(self) -> PopulationBatches:
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def steps_per_epoch(self) -> int:
        return 1 if self.full_batch else math.ceil(self.x.shape[1] / self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.steps_per_epoch() / self.steps_per_batch)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        if self.full_batch:
            yield MemberSteps(self.x, self.y)
            return
        n = self.x.shape[1]
        order = torch.stack([epoch_order(s, epoch, n) for s in self.seeds]).to(self.x.device)
        group = self.batch_size * self.steps_per_batch
        for start in range(0, n, group):
            yield MemberSteps(self.x, self.y, order[:, start:start + group], self.batch_size)
