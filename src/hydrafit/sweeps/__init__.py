"""Sweeps, read from the files their jobs leave: records, statistics, tables, the sweep figure,
resume, and hydrafit's sweepers (grid with resume, Optuna). Imports no torch."""
