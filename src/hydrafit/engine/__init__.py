"""Fitting only: a single run (single.py) and a population of runs trained as one stacked model
(population.py, memberwise.py). What a fit leaves on disk is hydrafit.report's."""
