"""metabench harness: datasets, frozen episodes, budgets, statistics and files. Never imports a specific
algorithm; algorithms come from the `algorithms` registry."""
