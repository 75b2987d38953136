"""metabench harness: datasets, frozen episodes, budgets, statistics and files. Never imports a specific
algorithm; algorithms come from the `algorithms` registry."""

__version__ = "0.1.0"
# `bench` and `algorithms` are also names of unrelated distributions on the package index; the CLI checks this
# marker (and that `algorithms` sits beside this package) so a clash is reported instead of importing the wrong one
__metabench__ = True
