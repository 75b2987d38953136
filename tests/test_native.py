"""The compiled first-layer kernel (algorithms/native.py) equals the plain PyTorch path it replaces — forward,
gradient and second derivative, MAML's meta-gradient included — and the suite still works without it."""
import copy

import pytest
import torch
from test_maml_gradients import image_batch, image_learner, loop_meta_gradient
from torch import nn

from algorithms import native, nets

needs_kernel = pytest.mark.skipif(
    native.library(torch.float32) is None or native.library(torch.float64) is None,
    reason="the kernel is off (METABENCH_NATIVE=0) or cannot be built here (no C compiler)")


@pytest.fixture
def pytorch_path(monkeypatch):
    """Within this fixture's `with`, the first layer takes the PyTorch path."""
    class Switch:
        def __enter__(self):
            monkeypatch.setattr(native, "covers", lambda x, weight: False)

        def __exit__(self, *exc):
            monkeypatch.undo()
    return Switch()


def first_block(cin: int, channels: int = 64, dtype=torch.float32) -> nets.ConvBlock:
    torch.manual_seed(0)
    block = nets.ConvBlock(cin, channels, pool=True, transductive=True).to(dtype)
    with torch.no_grad():  # batch norm's affine parameters away from (1, 0), one scale negative
        block.norm.weight.uniform_(0.5, 1.5)[3] = -0.7
        block.norm.bias.uniform_(-0.5, 0.5)
        # a zero weight: on binary images, two patches differing only there tie exactly while their gradients
        # differ, so only the first-wins rule of max_pool2d gives the same gradient
        block.conv.weight[:8, :, 0, 0] = 0
    return block


def images(n: int, cin: int, size: int, binary: bool, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, cin, size, size, generator=g, dtype=torch.float64)
    # binary images (Omniglot's strokes) give exact ties inside pooling windows, whose winner must be the first.
    # In float32 only binary ones: with continuous pixels some window of thousands holds two values within
    # rounding of each other, and the two paths' rounding may crown different winners (float64 makes that remote)
    return ((x > 0.7) if binary else x).to(dtype)


def assert_close_to_scale(actual, expected, tolerance=1e-5, label=""):
    """Equal up to float32 rounding: no entry further from the expected than `tolerance` x its largest entry (a
    per-entry relative test fails on entries that are sums cancelling to nearly zero). On the development machine
    both paths stay within 3e-6 of float64 on these blocks (on an AMD EPYC the kernel was 8e-7 off and the PyTorch
    path 4.9e-5, before its batch statistics were summed in float64)."""
    error = (actual - expected).abs().max().item()
    assert error <= tolerance * expected.abs().max().item(), f"{label}: max error {error:.3g}, largest entry " \
        f"{expected.abs().max().item():.3g}"


def derivatives(block: nets.ConvBlock, x: torch.Tensor):
    """Output, gradients of a weighted sum of it, and gradients of the squared norm of those gradients."""
    params = dict(block.named_parameters())
    out = block.forward_with(params, x)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    grads = torch.autograd.grad((out * weights).sum(), list(params.values()), create_graph=True)
    second = torch.autograd.grad(sum((g * g).sum() for g in grads), list(params.values()), materialize_grads=True)
    return out, grads, second


@needs_kernel
@pytest.mark.parametrize("cin,size,binary", [(1, 28, False), (3, 20, False), (1, 11, True)])
def test_kernel_equals_the_pytorch_path_to_second_order_in_float64(pytorch_path, cin, size, binary):
    block, x = first_block(cin, dtype=torch.float64), images(6, cin, size, binary, torch.float64)
    assert native.covers(x, block.conv.weight)
    fast = derivatives(block, x)
    with pytorch_path:
        slow = derivatives(block, x)
    for a, b in zip([fast[0], *fast[1], *fast[2]], [slow[0], *slow[1], *slow[2]]):
        torch.testing.assert_close(a, b)


@needs_kernel
@pytest.mark.parametrize("cin,size", [(1, 28), (3, 20)])
def test_both_float32_paths_are_within_rounding_of_float64_to_second_order(pytorch_path, cin, size):
    """Each float32 path against the float64 evaluation of the same block, never one float32 path against the
    other: which of two float32 results is nearer the truth depends on the CPU's and BLAS's summation order."""
    block, x = first_block(cin), images(6, cin, size, binary=True)
    exact = derivatives(copy.deepcopy(block).double(), x.double())
    fast = derivatives(block, x)
    with pytorch_path:
        slow = derivatives(block, x)
        exact_slow = derivatives(copy.deepcopy(block).double(), x.double())
    for name, result in (("kernel", fast), ("PyTorch path", slow)):
        for i, (a, b, c) in enumerate(zip([result[0], *result[1], *result[2]], [exact[0], *exact[1], *exact[2]],
                                          [exact_slow[0], *exact_slow[1], *exact_slow[2]])):
            torch.testing.assert_close(b, c)  # the two paths agree in float64 (so either is "the" reference)
            assert_close_to_scale(a.double(), b, label=f"{name}, output {i}")


@needs_kernel
@pytest.mark.parametrize("dtype,cin,size", [(torch.float64, 1, 28), (torch.float64, 3, 13), (torch.float32, 3, 40)])
def test_patch_moments_equal_those_of_the_unfolded_patches(dtype, cin, size):
    x = images(5, cin, size, binary=False, dtype=dtype)
    patches = torch.nn.functional.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 9 * cin).double()
    mean, cov = native.patch_moments(x)
    assert mean.dtype == cov.dtype == dtype
    tolerance = {} if dtype == torch.float64 else {"atol": 1e-6, "rtol": 1e-5}
    torch.testing.assert_close(mean.double(), patches.mean(0), **tolerance)
    torch.testing.assert_close(cov.double(), torch.cov(patches.t(), correction=0), **tolerance)


@needs_kernel
def test_the_kernels_derivatives_pass_gradcheck():
    """Finite differences against the three maps' own first and second derivatives, in float64."""
    x = images(2, 2, 6, binary=False, dtype=torch.float64)
    folded = torch.randn(2 * 9 + 1, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2),
                         requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: native.pooled_patch_relu(x, a), (folded,))
    assert torch.autograd.gradgradcheck(lambda a: native.pooled_patch_relu(x, a).square(), (folded,))


@needs_kernel
def test_kernel_equals_the_textbook_layers():
    """conv (no bias) -> batch norm -> ReLU -> max-pool as separate torch modules, Omniglot-like binary images."""
    block, x = first_block(1), images(10, 1, 28, binary=True)
    exact = copy.deepcopy(block).double()
    textbook = nn.Sequential(exact.conv, exact.norm, nn.ReLU(), nn.MaxPool2d(2))  # in float64: the reference
    fast, slow = block(x), textbook(x.double())
    assert_close_to_scale(fast.double(), slow, label="output")
    params, exact_params = list(block.parameters()), list(exact.parameters())
    for a, b in zip(torch.autograd.grad(fast.square().sum(), params),
                    torch.autograd.grad(slow.square().sum(), exact_params)):
        assert_close_to_scale(a.double(), b, label="gradient")


@needs_kernel
@pytest.mark.parametrize("batching", ["threads", "loop"])
def test_maml_meta_gradient_with_the_kernel_equals_the_pytorch_loop(pytorch_path, batching):
    """Second-order MAML through the kernel (worker threads calling it side by side) against the per-task loop
    written in tests/test_maml_gradients.py run entirely on PyTorch ops; in float64, where no pooling window of the
    whole network is close enough to a tie for rounding to crown another winner (float32 MAML gradients of two
    correct implementations differ by ~1e-4 whenever that happens somewhere)."""
    learner = image_learner("maml", "conv4", task_batching=batching)
    learner.net.double()
    batch = image_batch(tasks=4, query=5)
    batch.support_x, batch.query_x = batch.support_x.double(), batch.query_x.double()
    fast, _ = learner.meta_gradients(batch)
    with pytorch_path:
        reference = loop_meta_gradient(learner, batch, first_order=False)
    for name in reference:
        torch.testing.assert_close(fast[name], reference[name])


def test_kernel_is_not_used_where_it_does_not_apply():
    weight = torch.zeros(64, 1, 3, 3)
    x = torch.rand(2, 1, 28, 28)
    assert not native.covers(x.half(), weight.half())                          # float32 and float64 only
    assert not native.covers(x, weight.double())                               # one element type
    assert not native.covers(torch.rand(2, 4, 28, 28), torch.zeros(64, 4, 3, 3))  # at most 3 input channels
    assert not native.covers(x, torch.zeros(40, 1, 3, 3))                      # channels in steps of 16
    assert not native.covers(x.clone().requires_grad_(), weight)               # a gradient for the images
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not native.covers(x, weight)                                     # autocast computes in bf16
    seen = []
    torch.func.vmap(lambda xi: seen.append(native.covers(xi[None], weight)) or xi)(x)
    assert seen == [False]                                                      # torch.func wrappers have no data


def test_without_a_compiler_the_pytorch_path_is_used_with_one_warning(monkeypatch, tmp_path):
    monkeypatch.delenv("METABENCH_NATIVE", raising=False)  # the suite may run with the kernel switched off
    monkeypatch.setattr(native, "_libraries", {})
    monkeypatch.setenv("METABENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    block, x = first_block(1), images(3, 1, 28, binary=True)
    with pytest.warns(RuntimeWarning, match=r"pooled_patch_kernel\.c.*not available.*C compiler.*METABENCH_NATIVE=0"):
        assert native.library(torch.float32) is None
    assert not native.covers(x, block.conv.weight)
    out = block(x)  # the PyTorch path, no second warning
    exact = copy.deepcopy(block).double()
    textbook = nn.Sequential(exact.conv, exact.norm, nn.ReLU(), nn.MaxPool2d(2))
    assert_close_to_scale(out.double(), textbook(x.double()), label="output")
    assert not list(tmp_path.glob("native/*.so"))


def test_a_failed_build_leaves_no_library_behind(monkeypatch, tmp_path):
    monkeypatch.delenv("METABENCH_NATIVE", raising=False)
    monkeypatch.setattr(native, "_libraries", {})
    monkeypatch.setenv("METABENCH_CACHE", str(tmp_path))
    broken = tmp_path / "cc"
    broken.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo broken-cc 1.0 && exit 0\n"
                      "echo 'error: no' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    with pytest.warns(RuntimeWarning, match="error: no"):
        assert native.library(torch.float32) is None
    assert list((tmp_path / "native").iterdir()) == []


def test_metabench_native_0_turns_it_off_silently(monkeypatch, recwarn):
    monkeypatch.setattr(native, "_libraries", {})
    monkeypatch.setenv("METABENCH_NATIVE", "0")
    assert native.library(torch.float32) is None
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
