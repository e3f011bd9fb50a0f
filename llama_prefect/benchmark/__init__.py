"""Benchmarks behind `llama-prefect bench`: policies side by side in one run.

`simulated` runs the Llama variants, the ablations and the baselines on the
simulator at archive scale; `real` runs the crossing pipeline on this machine on the
sample archive; `table` prints what either measured.
"""
