"""The members' nets of a population as one stack of parameters, and each member's loss on it.

Members whose nets have the same architecture are evaluated with torch.func.functional_call on
a copy of the first net (vmap over the member dimension). MLPs of one depth but different widths
or activations (model.hidden_dims=[8],[16] model.activation=relu,tanh) are stacked padded to the
widest layer: a member's padded units are multiplied by zero after their activation, so they add
exactly nothing to its outputs and get zero gradients (their weights stay zero under Adam, AdamW
and SGD), and each member's activation is picked per member. A member whose data is standardised
(dataset.standardize=true) is evaluated as models.Standardized evaluates it, with its own
training rows' scaling, and minimises the MSE in standard units, as models.Regressor.loss does.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call

from hydrafit.models import Standardized


def core(module: nn.Module) -> nn.Module:
    """A Regressor's trained net, without the Standardized wrapper (which holds no parameters)."""
    return module.net.net if isinstance(module.net, Standardized) else module.net


def signature(net: nn.Module) -> tuple:
    """What must be equal for functional_call on one net to evaluate another: its modules, their
    shapes (repr), and its buffers' shapes."""
    return repr(net), tuple((n, b.shape) for n, b in net.named_buffers())


def pad_stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The tensors, zero-padded to their largest size in every dimension, stacked on a new first one."""
    shape = [max(sizes) for sizes in zip(*(t.shape for t in tensors))]
    out = tensors[0].new_zeros(len(tensors), *shape)
    for k, t in enumerate(tensors):
        out[(k, *(slice(0, s) for s in t.shape))] = t
    return out


def unpad(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Member k's own tensor from its padded slice t = stacked[k]: a copy of the leading `shape`."""
    return t[tuple(slice(0, s) for s in shape)].clone()


def is_mlp(net: nn.Module) -> bool:
    """An nn.Sequential of Linear layers with parameter-free activations between them (models.mlp)."""
    return isinstance(net, nn.Sequential) and all(
        isinstance(layer, nn.Linear) if i % 2 == 0 else not list(layer.parameters())
        for i, layer in enumerate(net)) and len(net) % 2 == 1


class StackedNets:
    """How to evaluate member k of the stack: `forward(params, buffers, extra, x)` for one member
    (vmap maps it over all), with `extra` the member's own tensors (extras(): masks, activation,
    scaling)."""

    def __init__(self, nets: list[nn.Module], scalings: list[dict | None]):
        self.shapes = [{n: t.shape for n, t in [*net.named_parameters(), *net.named_buffers()]} for net in nets]
        self.same = len({signature(net) for net in nets}) == 1
        if not self.same and not all(is_mlp(net) for net in nets):
            raise ValueError("members of one population differ in architecture and are not all MLPs")
        self.base = copy.deepcopy(nets[0]).to("meta")  # functional_call's template, no memory
        self.layers = [] if self.same else [i for i in range(0, len(nets[0]), 2)]
        kinds = [type(net[1]) if len(net) > 1 else nn.Identity for net in nets] if not self.same else []
        self.activations = [kind() for kind in dict.fromkeys(kinds)]  # distinct, in order of appearance
        self.codes = [list(dict.fromkeys(kinds)).index(kind) for kind in kinds]
        self.nets, self.scaled = nets, scalings[0] is not None
        self.scalings = scalings

    def extras(self) -> dict[str, torch.Tensor]:
        """Each member's own tensors, stacked, in float64 (train_dataloader converts them to the
        data's dtype, as a Python float meets a tensor in the member's single run)."""
        out: dict[str, torch.Tensor] = {}
        if self.scaled:
            for key in ("x_mean", "x_std", "y_mean", "y_std"):
                out[key] = torch.tensor([s[key] for s in self.scalings], dtype=torch.float64)
            out["y_var"] = torch.tensor([s["y_std"] ** 2 for s in self.scalings], dtype=torch.float64)
        if not self.same:
            widths = [[net[i].out_features for i in self.layers[:-1]] for net in self.nets]
            for j in range(len(self.layers) - 1):
                widest = max(w[j] for w in widths)
                out[f"mask{j}"] = torch.tensor([[1.0] * w[j] + [0.0] * (widest - w[j]) for w in widths],
                                               dtype=torch.float64)
            out["activation"] = torch.tensor(self.codes)
        return out

    def net(self, params: dict, buffers: dict, extra: dict, x: torch.Tensor) -> torch.Tensor:
        """One member's net on x (its standard units when scaled)."""
        if self.same:
            return functional_call(self.base, (params, buffers), (x,))
        h = x
        for j, i in enumerate(self.layers):
            h = nn.functional.linear(h, params[f"{i}.weight"], params[f"{i}.bias"])
            if j < len(self.layers) - 1:
                h = self.activate(h, extra["activation"]) * extra[f"mask{j}"]
        return h

    def activate(self, h: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """The member's activation of h: each distinct one computed, the member's own selected."""
        out = self.activations[0](h)
        for c, activation in enumerate(self.activations[1:], 1):
            out = torch.where(code == c, activation(h), out)
        return out

    def forward(self, params: dict, buffers: dict, extra: dict, x: torch.Tensor) -> torch.Tensor:
        """The member's predictions in the data's units (models.Standardized when scaled)."""
        if not self.scaled:
            return self.net(params, buffers, extra, x)
        scaled = (x - extra["x_mean"]) / extra["x_std"]
        return self.net(params, buffers, extra, scaled) * extra["y_std"] + extra["y_mean"]

    def losses(self, params: dict, buffers: dict, extra: dict, x: torch.Tensor, y: torch.Tensor):
        """(the loss the member's optimizer minimises, its MSE in the data's units): as
        models.Regressor.loss, the first is the MSE in standard units when scaled."""
        mse = nn.functional.mse_loss(self.forward(params, buffers, extra, x), y)
        return (mse / extra["y_var"] if self.scaled else mse), mse
