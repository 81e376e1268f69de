"""Benchmarks: hydrafit against plain PyTorch and a naive Lightning script.

Run all of them with `make bench` (or `python -m benchmarks.run`); see benchmarks/run.py.
"""
