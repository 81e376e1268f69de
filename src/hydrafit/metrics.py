"""The final numbers of a run: what metrics.json, the HPARAMS tab and sweepers read."""
from __future__ import annotations

import torch
from torch import nn

from hydrafit.rundir.files import final_metric_names


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """net(x) on the net's device, returned on the CPU; leaves the net's train/eval mode as it was."""
    was_training = net.training
    net.eval()
    param = next(net.parameters())  # match the net's device and dtype (trainer.precision=64)
    y = net(x.to(param.device, param.dtype)).float().cpu()
    net.train(was_training)
    return y


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.mean((a - b) ** 2).item()


def final_metrics(net: nn.Module, datamodule) -> dict[str, float]:
    """train/mse, val/mse (if split), truth/rmse on the dense noiseless grid, baseline/truth_rmse."""
    dm = datamodule
    metrics = {"train/mse": _mse(predict(net, dm.x_train), dm.y_train.cpu())}
    if len(dm.x_val):
        metrics["val/mse"] = _mse(predict(net, dm.x_val), dm.y_val.cpu())
    if dm.truth is None:  # data from a file (dataset=csv): no true function to score against
        return metrics
    grid = dm.grid()
    truth = dm.truth(grid)
    metrics["truth/rmse"] = _mse(predict(net, grid), truth) ** 0.5
    baseline = dm.baseline
    if baseline is not None:
        metrics["baseline/truth_rmse"] = _mse(baseline(grid.double()).float(), truth) ** 0.5
    return metrics


def metric_names(datamodule) -> list[str]:
    """The keys final_metrics will report for this datamodule, known before training."""
    return final_metric_names(len(datamodule.x_val) > 0, datamodule.baseline_degree is not None,
                              datamodule.truth is not None)
