"""hydrafit: fit 1-D functions with Hydra-composed PyTorch Lightning runs."""
