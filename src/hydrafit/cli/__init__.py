"""The command-line entry points (hydrafit-train, hydrafit-eval, hydrafit-sweep-report), the Hydra
callbacks conf/ names, and plugin registration: the code that ends the process."""
