"""Helpers shared by the gradient-based learners (pretrain, MAML, FOMAML, Reptile): losses on functional
parameters and test-time fine-tuning by plain gradient descent on the support set."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

Params = dict[str, torch.Tensor]


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


def sgd_step(net: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, lr: float,
             loss_fn: Callable, create_graph: bool = False) -> Params:
    """One plain gradient step on (x, y). With create_graph the step stays differentiable (second-order MAML)."""
    loss = loss_fn(forward(net, params, x), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    return {k: p - lr * g for (k, p), g in zip(params.items(), grads)}


def finetune_predictions(net: nn.Module, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                         query_x: torch.Tensor, lr: float, steps: list[int], loss_fn: Callable
                         ) -> dict[int, torch.Tensor]:
    """Query predictions after each step count in `steps` of full-batch SGD on the support set, from one run.

    Every step uses the same support points (the MAML evaluation protocol). Runs without building a graph
    across steps: each step's gradient is taken on detached parameters.
    """
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
            current = {k: v.detach() for k, v in sgd_step(net, leaves, support_x, support_y, lr, loss_fn).items()}
    return out
