"""metabench's algorithms: importing the package registers every built-in one (the registry itself is in
algorithms/_registry.py: `@register("name")`, `get(name)`, `names(pattern)`, plugins).

Built-in algorithms register themselves when their module is imported below: adding one is its file plus one
line here. Third-party packages add theirs through the entry-point group `metabench.algorithms` (loaded by
`load_plugins()`), or a module given with `metabench run --plugin MODULE`.
"""
# ruff: noqa: I001
from __future__ import annotations

from algorithms._registry import (_REGISTRY, _REQUESTED, UnknownNameError, expand, get, is_builtin,  # noqa: F401
                                  load_plugins, names, plugin_info, register, requested, suggest)

# Built-in algorithms: one import line each; the order here is the listing order (`metabench list`, tables,
# perf steps), which is why this file opts out of ruff's import sorting (the I001 rule, above).
from algorithms import pretrain  # noqa: F401
from algorithms import maml  # noqa: F401
from algorithms import fomaml  # noqa: F401
from algorithms import reptile  # noqa: F401
from algorithms import protonet  # noqa: F401
from algorithms import siamese  # noqa: F401
from algorithms import matchingnet  # noqa: F401
from algorithms import relationnet  # noqa: F401
from algorithms import hallucination  # noqa: F401
from algorithms import baselinepp  # noqa: F401
from algorithms import blackbox_lstm  # noqa: F401
from algorithms import mann  # noqa: F401
from algorithms import snail  # noqa: F401
from algorithms import lstm_optimizer  # noqa: F401
from algorithms import gated_lstm_optimizer  # noqa: F401
from algorithms import hand_optimizers  # noqa: F401  (sgd, rmsprop, adam, nag)
from algorithms import meta_lstm  # noqa: F401
from algorithms import pixels_1nn  # noqa: F401

# marker checked by the CLI: `algorithms` is also a distribution name on the package index
__metabench__ = True
