"""First-order MAML: MAML with the second derivative dropped.

Finn, Abbeel & Levine, ICML 2017, Sec. 5.2 ("first-order approximation"): the meta-gradient of Eq. (2) is taken
as the query-loss gradient at the adapted parameters θ'_i, i.e. ∇_θ θ'_i is treated as the identity.
"""
from __future__ import annotations

from algorithms._registry import register
from algorithms.maml import MAML


@register("fomaml")
class FOMAML(MAML):
    """MAML whose inner-loop gradients are constants for the meta-gradient (no Hessian-vector products)."""

    first_order = True
