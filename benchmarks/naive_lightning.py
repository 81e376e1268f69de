"""The naive Lightning script of target 2: the seed fit as a newcomer writes it, with Lightning's
defaults (TensorBoard logger, progress bar, a checkpoint every epoch). Timed against a whole
default `hydrafit-train` run by benchmarks/run.py. Run: python benchmarks/naive_lightning.py [epochs]
"""
import sys

import pytorch_lightning as pl
import torch
from torch import nn

x = torch.linspace(-2, 2, 128).unsqueeze(1)
y = x**2 - 2 * x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(12345))


class Fit(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        loss = nn.functional.mse_loss(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.03)


if __name__ == "__main__":
    pl.seed_everything(12345)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=128)
    trainer = pl.Trainer(max_epochs=int(sys.argv[1]) if len(sys.argv) > 1 else 250, log_every_n_steps=1)
    trainer.fit(Fit(), data)
