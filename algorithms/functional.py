"""Helpers shared by the gradient-based learners (pretrain, MAML, FOMAML, Reptile): losses on functional
parameters and test-time fine-tuning by plain gradient descent on the support set."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

Params = dict[str, torch.Tensor]
T = TypeVar("T")
R = TypeVar("R")


def task_loss(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-task training loss for a benchmark kind: MSE for regression, cross-entropy for classification."""
    if kind == "regression":
        return F.mse_loss
    if kind == "classification":
        return F.cross_entropy
    raise ValueError(f"no task loss for benchmark kind {kind!r}")


def parameters_of(net: nn.Module) -> Params:
    return {k: v for k, v in net.named_parameters()}


def forward(net: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """net(x) evaluated at `params` (buffers, if any, are the module's own). Backbones from algorithms.nets
    have a pure `forward_with`; functional_call (which swaps the module's tensors, so is not thread-safe)
    serves any other module."""
    if hasattr(net, "forward_with"):
        return net.forward_with(params, x)
    return functional_call(net, params, (x,))


def finetune_predictions(net: nn.Module, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                         query_x: torch.Tensor, lr: float, steps: list[int], loss_fn: Callable,
                         update: Callable[[Params, Params], Params] | None = None) -> dict[int, torch.Tensor]:
    """Query predictions after each step count in `steps` of full-batch gradient descent on the support set,
    from one run. `update(params, grads)` replaces the plain SGD step (e.g. Reptile's Adam).

    Every step uses the same support points (the MAML evaluation protocol). No graph is kept across steps.
    """
    update = update or (lambda p, g: {k: p[k] - lr * g[k] for k in p})
    wanted = sorted(set(steps))
    out: dict[int, torch.Tensor] = {}
    current = {k: v.detach() for k, v in params.items()}
    for step in range(wanted[-1] + 1):
        if step in wanted:
            with torch.no_grad():
                out[step] = forward(net, current, query_x)
        if step == wanted[-1]:
            break
        with torch.enable_grad():
            leaves = {k: v.requires_grad_(True) for k, v in current.items()}
            loss = loss_fn(forward(net, leaves, support_x), support_y)
            grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
        current = {k: v.detach() for k, v in update(leaves, grads).items()}
    return out


def map_tasks(fn: Callable[[list[T]], R], items: Sequence[T], workers: int) -> list[R]:
    """fn over `workers` interleaved chunks of items, each chunk in its own thread running single-threaded
    torch ops; results in chunk order (so sums over them are deterministic).

    On a CPU, small convolutions parallelise poorly inside one op (thread start-up and barriers per op), so
    running whole tasks side by side uses the cores better than splitting every op across them.
    """
    workers = max(1, min(workers, len(items)))
    chunks = [list(items[w::workers]) for w in range(workers)]
    if workers == 1:
        return [fn(chunks[0])]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(_with_callers_autocast(fn), chunks))
    finally:
        torch.set_num_threads(threads)


def _with_callers_autocast(fn: Callable[[T], R]) -> Callable[[T], R]:
    """fn under the calling thread's torch.autocast settings: autocast state is thread-local, so worker threads
    would otherwise silently compute in float32."""
    active = [(kind, torch.get_autocast_dtype(kind)) for kind in ("cpu", "cuda") if torch.is_autocast_enabled(kind)]
    if not active:
        return fn
    cache = torch.is_autocast_cache_enabled()

    def wrapped(item: T) -> R:
        with contextlib.ExitStack() as stack:
            for kind, dtype in active:
                stack.enter_context(torch.autocast(kind, dtype=dtype, cache_enabled=cache))
            return fn(item)
    return wrapped
