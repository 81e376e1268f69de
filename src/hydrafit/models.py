"""Networks for the `model` config group, and the LightningModule that trains any of them."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "sigmoid": nn.Sigmoid,
    "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "softplus": nn.Softplus,
}
INITS = ("torch", "glorot_uniform")


def mlp(hidden_dims, activation: str = "relu", init: str = "torch") -> nn.Sequential:
    """model=mlp: 1 -> hidden_dims[0] -> ... -> 1 with `activation` between Linear layers."""
    dims = [1, *hidden_dims, 1]
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(d_in, d_out), ACTIVATIONS[activation]()]
    net = nn.Sequential(*layers[:-1])  # no activation after the output layer
    if init == "glorot_uniform":  # Lux < 1.0 Dense: glorot_uniform weights, zero biases
        for layer in net:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return net


class Monomials(nn.Module):
    """x -> [x, x^2, ..., x^degree]: features for a linear model."""

    def __init__(self, degree: int):
        super().__init__()
        self.register_buffer("powers", torch.arange(1, degree + 1, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x ** self.powers


def polynomial(degree: int = 2) -> nn.Sequential:
    """model=polynomial: a linear model on monomial features (least squares, learned by SGD)."""
    return nn.Sequential(Monomials(degree), nn.Linear(degree, 1))


class Standardized(nn.Module):
    """`net` fitted to standardised data, called in the data's own units:
    y = net((x - x_mean) / x_std) * y_std + y_mean. With `dataset.standardize=true` the
    Regressor's net is this wrapper, so metrics, plots and hydrafit-eval predictions need no
    knowledge of the scaling; the statistics come from the training split (data.standard_scaling)."""

    def __init__(self, net: nn.Module, x_mean: float, x_std: float, y_mean: float, y_std: float):
        super().__init__()
        self.net, self.x_mean, self.x_std, self.y_mean, self.y_std = net, x_mean, x_std, y_mean, y_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.x_mean) / self.x_std) * self.y_std + self.y_mean


class Regressor(pl.LightningModule):
    """MSE regression of y on x. Built from plain config dicts so a checkpoint carries only
    plain containers: it reloads with torch's default `weights_only=True`.

    model, optimizer, scheduler: resolved configs of those groups (`_target_` + arguments);
    optimizer and scheduler are `_partial_` and get finished in configure_optimizers.
    scaling: the training data's means and stds (data.standard_scaling) or None; when given,
    the net is wrapped in Standardized and the loss minimised is the MSE in standard units.
    """

    def __init__(self, model: dict, optimizer: dict, scheduler: dict | None = None,
                 scaling: dict | None = None):
        super().__init__()
        self.save_hyperparameters(logger=False)  # train() logs the whole run config itself
        self.net = instantiate(model, _convert_="all")
        if scaling:
            self.net = Standardized(self.net, **scaling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        # sync_dist: under DDP, the mean over all ranks' shards (a no-op in one process)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(x), sync_dist=True)
        if self.hparams.scaling:  # optimise in standard units: optimizer settings do not depend on y's
            return loss / self.hparams.scaling["y_std"] ** 2
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", nn.functional.mse_loss(self.net(x), y), batch_size=len(x), sync_dist=True)

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer, _convert_="all")(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler, _convert_="all")(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
