"""Shared backbones, all usable functionally (torch.func.functional_call) so MAML-style learners can adapt them.

Networks are built on the meta device and then initialised from an explicit torch.Generator, so building a
network neither reads nor advances the global RNG (results depend on the cell seed only).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from algorithms import native

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
        from algorithms._registry import UnknownNameError, suggest
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
        return self.forward_with(dict(self.named_parameters()), x)

    def forward_with(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The forward pass at parameters `p` (names as in named_parameters()); pure, so thread-safe."""
        for i in range(len(self.hidden)):
            x = self.activation(F.linear(x, p[f"hidden.{i}.weight"], p[f"hidden.{i}.bias"]))
        return F.linear(x, p["out.weight"], p["out.bias"]) if self.out is not None else x


_PATCH_ROWS_PER_CHUNK = 20000  # see ConvBlock._first_layer


def _inside_functorch_transform() -> bool:
    """True while torch.func.vmap or grad is tracing, where tensors are wrappers whose memory layout is fixed."""
    return torch._C._functorch.peek_interpreter_stack() is not None


def _batch_norm_by_hand(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Training-mode batch norm of [N, C, H, W] from its definition (biased variance, no running statistics)."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = (x - mean).square().mean(dim=(0, 2, 3), keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * weight[:, None, None] + bias[:, None, None]


@backbone("mlp-40-40")
def _mlp_40_40(input_shape, out_dim, activation: str = "relu", transductive: bool = False):
    return MLP(math.prod(input_shape), [40, 40], out_dim, activation)


class ConvBlock(nn.Module):
    """3x3 convolution, batch norm, ReLU, then 2x2 max-pool (pool=True) or nothing (stride carries the
    down-sampling in MAML's Omniglot network)."""

    def __init__(self, cin: int, cout: int, pool: bool, stride: int = 1, transductive: bool = False):
        super().__init__()
        # no conv bias: batch norm subtracts it again, so its gradient is pure rounding noise
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        # transductive: always normalise with the current batch's statistics (MAML's code keeps batch norm in
        # training mode at test time); otherwise the usual running statistics in eval mode.
        self.norm = nn.BatchNorm2d(cout, track_running_stats=not transductive)
        self.pool = pool

    def forward_with(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if self.conv.in_channels <= 3 and x.device.type == "cpu":
            return self._first_layer(p, x)
        x = F.conv2d(x, p["conv.weight"], None, stride=self.conv.stride, padding=1)
        norm = self.norm  # running_mean is None when transductive: batch statistics in train and eval mode
        if _inside_functorch_transform() and self._batch_stats():
            # under torch.func (MAML's `task_batching: vmap`) F.batch_norm's second derivative came out wrong
            # (torch 2.14; tests/test_maml_gradients.py), and the memory layout cannot be changed
            x = _batch_norm_by_hand(x, p["norm.weight"], p["norm.bias"], norm.eps)
        else:
            # channels-last: CPU batch norm and max-pool are several times faster in it (convolutions a bit)
            x = x.contiguous(memory_format=torch.channels_last)
            x = F.batch_norm(x, norm.running_mean, norm.running_var, p["norm.weight"], p["norm.bias"],
                             training=self._batch_stats(), momentum=norm.momentum, eps=norm.eps)
        # max-pool before ReLU: the same result as ReLU-then-pool (ReLU is monotone) on a quarter of the
        # elements, which matters on CPUs where these memory-bound ops cost as much as the convolutions.
        if self.pool:
            x = F.max_pool2d(x, 2)
        # in place: nothing keeps the pre-activation (pooling and batch norm save their inputs, not their outputs),
        # and on a CPU every full-size pass over memory counts
        return F.relu(x, inplace=True)

    def _batch_stats(self) -> bool:
        return self.training or self.norm.running_mean is None

    def _first_layer(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """conv + batch norm (+ max-pool) + ReLU of a first layer (1-3 input channels) on the CPU, as one matrix
        product or, pooled, one compiled kernel.

        The convolution is linear in each pixel's 3x3 patch, so the batch statistics of its output follow from
        the patches' mean μ and covariance Σ: mean_c = w_c·μ, var_c = w_cᵀ Σ w_c. Batch norm then folds into the
        weights (w_c·γ_c/σ_c) and a bias, and the full-resolution activations are written once, directly in
        channels-last order, instead of passing through separate convolution and normalisation kernels (and
        their backward passes) — the most expensive part of a Conv-4 on a CPU. With pooling, the C kernel of
        algorithms/native.py goes further and never writes them at all. Equal to conv → batch norm → ReLU (→ pool)
        up to float rounding (tests/test_nets.py, tests/test_native.py).
        """
        n, cin, height, width = x.shape
        stride = self.conv.stride[0]
        out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
        k = cin * 9
        weight = p["conv.weight"].reshape(self.conv.out_channels, k)
        kernel = self.pool and native.covers(x, p["conv.weight"])  # the compiled kernel does this layer
        # the 3x3 patches as rows [n * rows, k]; the kernel needs only their moments, and computes those itself
        unfolded = None if kernel else F.unfold(x, 3, padding=1, stride=stride).transpose(1, 2).reshape(-1, k)
        norm = self.norm
        if self._batch_stats():
            with torch.autocast(x.device.type, enabled=False):  # batch statistics stay float32 under autocast
                with torch.no_grad():  # the input needs no gradient, so neither do its moments
                    if kernel:
                        mu, cov = native.patch_moments(x)
                    else:
                        # in float64, as the kernel sums them: a float32 covariance is a sum over thousands of
                        # rows whose rounding depends on the BLAS kernel's blocking (AVX2 vs AVX-512), and its
                        # ~1e-5 relative error moved every output of a channel by up to 5e-5 on some CPUs
                        rows = unfolded.double()
                        mu = rows.mean(0)
                        centred = rows - mu
                        cov = (centred.t() @ centred / rows.shape[0]).to(unfolded.dtype)
                        mu = mu.to(unfolded.dtype)
                mean, var = weight @ mu, ((weight @ cov) * weight).sum(1)
            if self.training and norm.running_mean is not None:
                with torch.no_grad():
                    count = n * out_h * out_w
                    norm.running_mean.lerp_(mean.detach(), norm.momentum)
                    norm.running_var.lerp_(var.detach() * count / max(1, count - 1), norm.momentum)
                    norm.num_batches_tracked.add_(1)
        else:
            mean, var = norm.running_mean, norm.running_var
        scale = p["norm.weight"] / torch.sqrt(var + norm.eps)
        # a contiguous [k + 1, c] right operand (torch.cat writes a new one) makes autograd take the weight gradient
        # as patchesᵀ @ grad, several times faster on a CPU than the (grad ᵀ @ patches)ᵀ it picks for a transposed view
        folded = torch.cat(((weight * scale[:, None]).t(), (p["norm.bias"] - mean * scale)[None]), dim=0)
        if kernel:
            # each 2x2 window's four products, their maximum and the ReLU in registers
            return native.pooled_patch_relu(x, folded)
        # each patch with a trailing 1, so the bias rides in the matrix product: addmm's bias would first be
        # broadcast-copied into the full-resolution output (a slow extra pass over it), and its gradient would be a
        # separate sum over that output; here both come out of the one product and its weight gradient
        patches = torch.cat((unfolded, unfolded.new_ones(unfolded.shape[0], 1)), dim=1)
        rows = out_h * out_w
        if not self.pool:
            return F.relu((patches @ folded).view(n, out_h, out_w, -1).permute(0, 3, 1, 2), inplace=True)
        # Pooled a few images at a time: the full-resolution activations are the largest tensors of the network
        # (15 MB for 75 Omniglot images), and each pass over them (product, pool, the pool's zero-filled gradient,
        # the weight gradient) runs at memory speed; chunks of ~20,000 rows can stay in cache between the passes.
        # The gain measured on the development machine is small (about 1% of a MAML task).
        per_chunk = max(1, _PATCH_ROWS_PER_CHUNK // rows)
        pooled = [F.max_pool2d((patches[start * rows:(start + per_chunk) * rows] @ folded)
                               .view(-1, out_h, out_w, folded.shape[1]).permute(0, 3, 1, 2), 2)
                  for start in range(0, n, per_chunk)]
        # max-pool before ReLU: the same result as ReLU-then-pool (ReLU is monotone) on a quarter of the elements
        return F.relu(pooled[0] if len(pooled) == 1 else torch.cat(pooled), inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with({k: v for k, v in self.named_parameters()}, x)


class Conv4(nn.Module):
    """Four conv blocks, then a linear head to out_dim (or the flattened features when out_dim == 0).

    pool=True: the Vinyals/ProtoNets embedding (max-pool in every block; 64-d on 28x28, 1600-d on 84x84).
    pool=False: MAML's Omniglot network (stride-2 convolutions, spatial mean before the head; flatten=True:
    the flattened 2x2 maps, as in Reptile's code).
    """

    def __init__(self, input_shape, out_dim: int, width: int = 64, pool: bool = True, transductive: bool = False,
                 pool_blocks: int = 4, flatten: bool = False):
        super().__init__()
        channels, size, _ = input_shape
        blocks, cin = [], channels
        for i in range(4):
            pooled, strided = pool and i < pool_blocks, not pool
            blocks.append(ConvBlock(cin, width, pool=pooled, stride=2 if strided else 1, transductive=transductive))
            cin = width
            size = size // 2 if pooled else (size + 1) // 2 if strided else size
        self.blocks = nn.Sequential(*blocks)
        self.spatial_mean = not pool and not flatten
        self.feature_dim = width if self.spatial_mean else width * size * size
        self.head = nn.Linear(self.feature_dim, out_dim) if out_dim > 0 else None

    def features_with(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Embedding at parameters `p`; pure (thread-safe) apart from updating running statistics."""
        for i, block in enumerate(self.blocks):
            prefix = f"blocks.{i}."
            x = block.forward_with({k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}, x)
        return x.mean(dim=(-2, -1)) if self.spatial_mean else x.flatten(1)

    def forward_with(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        z = self.features_with(p, x)
        return F.linear(z, p["head.weight"], p["head.bias"]) if self.head is not None else z

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_with(dict(self.named_parameters()), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with(dict(self.named_parameters()), x)


@backbone("conv4")
def _conv4(input_shape, out_dim, transductive: bool = False):
    """Conv-4 with 64 filters and max-pooling: the Matching/Prototypical Networks embedding."""
    return Conv4(input_shape, out_dim, width=64, pool=True, transductive=transductive)


@backbone("conv4-maml-omniglot")
def _conv4_maml_omniglot(input_shape, out_dim, transductive: bool = True):
    """MAML's Omniglot network: 64 filters, stride-2 convolutions, spatial mean, linear head."""
    return Conv4(input_shape, out_dim, width=64, pool=False, transductive=transductive)


@backbone("conv4-reptile-omniglot")
def _conv4_reptile_omniglot(input_shape, out_dim, transductive: bool = True):
    """Reptile's Omniglot network: MAML's strided one with the final 2x2x64 maps flattened (256 features)."""
    return Conv4(input_shape, out_dim, width=64, pool=False, transductive=transductive, flatten=True)


@backbone("conv4-maml-mini")
def _conv4_maml_mini(input_shape, out_dim, transductive: bool = True):
    """MAML's Mini-ImageNet network: 32 filters with max-pooling, flattened 5x5x32 features, linear head."""
    return Conv4(input_shape, out_dim, width=32, pool=True, transductive=transductive)


@backbone("conv4-relation")
def _conv4_relation(input_shape, out_dim, transductive: bool = False):
    """Relation Network embedding (Sung et al. 2018): 4 blocks of 64 filters, max-pool in the first two only.

    Returns the flattened 64 x H/4 x W/4 feature maps (64x7x7 on 28x28 Omniglot); the official code leaves the
    first two convolutions unpadded (64x5x5 on 28x28, 64x19x19 on 84x84), ours pads all four like the other
    Conv-4s, which keeps the relation module's two 2x2 poolings valid on 28x28 (7 -> 3 -> 1).
    """
    return Conv4(input_shape, out_dim, width=64, pool=True, transductive=transductive, pool_blocks=2)
