"""Shared backbones, all usable functionally (torch.func.functional_call) so MAML-style learners can adapt them.

Networks are built on the meta device and then initialised from an explicit torch.Generator, so building a
network neither reads nor advances the global RNG (results depend on the cell seed only).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def backbone(name: str):
    def decorator(fn):
        _BUILDERS[name] = fn
        return fn
    return decorator


def names() -> list[str]:
    return sorted(_BUILDERS)


def build(name: str, input_shape: tuple[int, ...], out_dim: int, generator: torch.Generator,
          device: torch.device | str = "cpu", **options) -> nn.Module:
    """Build backbone `name` mapping one example of `input_shape` to `out_dim` outputs (0: features only)."""
    if name not in _BUILDERS:
        from algorithms import UnknownNameError, suggest
        raise UnknownNameError(f"unknown backbone {name!r}{suggest(name, names())}; known: {', '.join(names())}")
    with torch.device("meta"):
        net = _BUILDERS[name](tuple(input_shape), out_dim, **options)
    net = net.to_empty(device=device)
    init_parameters(net, generator)
    return net


def init_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation (Kaiming-uniform weights, fan-in-scaled uniform biases), drawn from
    `generator`; norm layers start at weight 1, bias 0."""
    # Generators live on one device; draw on the CPU and copy so CUDA builds give CPU-identical weights.
    def uniform_(t: torch.Tensor, bound: float) -> None:
        with torch.no_grad():
            t.copy_(torch.empty(t.shape).uniform_(-bound, bound, generator=generator))

    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            # kaiming_uniform_(a=sqrt(5)) as in nn.Linear.reset_parameters: bound = 1/sqrt(fan_in)
            uniform_(m.weight, 1.0 / math.sqrt(fan_in))
            if m.bias is not None:
                uniform_(m.bias, 1.0 / math.sqrt(fan_in))
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            if getattr(m, "running_mean", None) is not None:
                m.reset_running_stats()
        elif isinstance(m, (nn.LSTM, nn.LSTMCell, nn.GRU)):
            for p in m.parameters(recurse=False):
                uniform_(p, 1.0 / math.sqrt(m.hidden_size))


class MLP(nn.Module):
    """Fully connected ReLU network; the MAML sine regressor is MLP(1, [40, 40], 1)."""

    def __init__(self, in_dim: int, hidden: list[int], out_dim: int, activation: str = "relu"):
        super().__init__()
        dims = [in_dim, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], out_dim) if out_dim > 0 else None
        self.activation = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[activation]
        self.feature_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = self.activation(layer(x))
        return self.out(x) if self.out is not None else x


@backbone("mlp-40-40")
def _mlp_40_40(input_shape, out_dim, activation: str = "relu"):
    return MLP(math.prod(input_shape), [40, 40], out_dim, activation)
