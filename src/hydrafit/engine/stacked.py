"""The members' nets of a population as stacks of parameters, one stack per architecture, and
each member's loss on them.

Members whose nets have the same architecture (modules and shapes: model.hidden_dims,
model.activation) share a stack: their parameters stacked along a leading member dimension,
evaluated with torch.func.functional_call on a copy of one of their nets, vmapped over the
members. A population of several architectures holds one stack for each and evaluates them one
after the other in the same step, so each member computes exactly what its own net computes
(no padding) and a width x activation x depth grid still trains in one Lightning fit. A member
whose data is standardised (dataset.standardize=true) is evaluated as models.Standardized
evaluates it, with its own training rows' scaling, and minimises the MSE in standard units, as
models.Regressor.loss does.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, vmap

from hydrafit.models import Standardized

SCALING = ("x_mean", "x_std", "y_mean", "y_std", "y_var")


def core(module: nn.Module) -> nn.Module:
    """A Regressor's trained net, without the Standardized wrapper (which holds no parameters)."""
    return module.net.net if isinstance(module.net, Standardized) else module.net


def signature(net: nn.Module) -> tuple:
    """What must be equal for functional_call on one net to evaluate another: its modules and
    their shapes (repr), and its buffers' shapes."""
    return repr(net), tuple((n, tuple(b.shape)) for n, b in net.named_buffers())


def architectures(nets: list[nn.Module]) -> list[list[int]]:
    """The members of each architecture, in order of first appearance: [[0, 2], [1]]."""
    groups: dict[tuple, list[int]] = {}
    for k, net in enumerate(nets):
        groups.setdefault(signature(net), []).append(k)
    return list(groups.values())


def scaling_table(scalings: list[dict | None]) -> dict[str, torch.Tensor] | None:
    """Each member's scaling (data.standard_scaling), as float64 [members] tensors; None when
    the data is not standardised. Population.train_dataloader converts them to the data's dtype,
    as a Python float meets a tensor in the member's single run."""
    if scalings[0] is None:
        return None
    table = {key: torch.tensor([s[key] for s in scalings], dtype=torch.float64) for key in SCALING[:-1]}
    return table | {"y_var": table["y_std"] ** 2}


class Stack:
    """One architecture's members: `forward` evaluates one member (vmap maps it over them)."""

    def __init__(self, net: nn.Module, scaled: bool):
        self.base = copy.deepcopy(net).to("meta")  # functional_call's template, no memory
        self.names = [n for n, _ in net.named_parameters()]
        self.buffer_names = [n for n, _ in net.named_buffers()]
        self.scaled = scaled

    def forward(self, params: dict, buffers: dict, scaling: dict, x: torch.Tensor) -> torch.Tensor:
        """The member's predictions in the data's units (as models.Standardized when scaled)."""
        if not self.scaled:
            return functional_call(self.base, (params, buffers), (x,))
        x = (x - scaling["x_mean"]) / scaling["x_std"]
        return functional_call(self.base, (params, buffers), (x,)) * scaling["y_std"] + scaling["y_mean"]

    def losses(self, params: dict, buffers: dict, scaling: dict, x: torch.Tensor, y: torch.Tensor):
        """(the loss the member's optimizer minimises, its MSE in the data's units): as
        models.Regressor.loss, the first is the MSE in standard units when scaled."""
        mse = nn.functional.mse_loss(self.forward(params, buffers, scaling, x), y)
        return (mse / scaling["y_var"] if self.scaled else mse), mse

    def member_losses(self, params: dict, buffers: dict, scaling: dict, x: torch.Tensor, y: torch.Tensor):
        """losses() of every member of the stack: two [members] tensors."""
        return vmap(self.losses)(params, buffers, scaling, x, y)
