"""The backbones' fast forward paths equal the textbook layer sequence (conv -> batch norm -> ReLU -> max-pool)."""
import pytest
import torch
from torch import nn

from algorithms import native, nets


def textbook(net: nets.Conv4) -> nn.Module:
    layers = []
    for block in net.blocks:
        layers += [block.conv, block.norm, nn.ReLU()] + ([nn.MaxPool2d(2)] if block.pool else [])
    return nn.Sequential(*layers)


@pytest.mark.parametrize("name,shape", [("conv4", (1, 28, 28)), ("conv4-maml-omniglot", (1, 28, 28)),
                                        ("conv4-reptile-omniglot", (1, 28, 28)), ("conv4-maml-mini", (3, 84, 84))])
@pytest.mark.parametrize("transductive", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("first_layer", ["compiled kernel where it applies", "PyTorch"])
def test_fast_forward_and_gradients_equal_the_textbook_network(monkeypatch, name, shape, transductive, training,
                                                               first_layer):
    if first_layer == "PyTorch":  # the path taken without a C compiler (algorithms/native.py)
        monkeypatch.setattr(native, "covers", lambda x, weight: False)
    net = nets.build(name, shape, 0, torch.Generator().manual_seed(0), transductive=transductive).double()
    reference = textbook(net)
    x = torch.rand(6, *shape, dtype=torch.float64)
    if not transductive:  # give the running statistics non-trivial values first
        net.train()
        net.features(torch.rand(6, *shape, dtype=torch.float64))
    stats = [(b.norm.running_mean.clone(), b.norm.running_var.clone()) for b in net.blocks] if not transductive else []
    net.train(training)
    fast = net.features(x)
    fast_grads = torch.autograd.grad(fast.square().sum(), list(net.parameters()))
    if stats:  # the fast path updated the running statistics once; restore them for the reference pass
        fast_stats = [(b.norm.running_mean.clone(), b.norm.running_var.clone()) for b in net.blocks]
        for b, (m, v) in zip(net.blocks, stats):
            b.norm.running_mean.copy_(m), b.norm.running_var.copy_(v)
    reference.train(training)
    slow = reference(x)
    if net.spatial_mean:
        slow = slow.mean(dim=(-2, -1))
    slow = slow.flatten(1)
    slow_grads = torch.autograd.grad(slow.square().sum(), list(net.parameters()))
    torch.testing.assert_close(fast, slow)
    for a, b in zip(fast_grads, slow_grads):
        torch.testing.assert_close(a, b)
    if stats and training:
        for b, (m, v) in zip(net.blocks, fast_stats):
            torch.testing.assert_close(m, b.norm.running_mean)
            torch.testing.assert_close(v, b.norm.running_var)


def test_first_layer_pooled_in_chunks_equals_the_textbook_network(monkeypatch):
    """Batches larger than one chunk of the first layer's patch product (here 3 chunks of 2 images) pool each
    chunk separately; forward and gradients still equal conv -> batch norm -> ReLU -> max-pool on the whole batch."""
    monkeypatch.setattr(nets, "_PATCH_ROWS_PER_CHUNK", 2 * 28 * 28)
    monkeypatch.setattr(native, "covers", lambda x, weight: False)  # the chunks are the PyTorch path's
    net = nets.build("conv4", (1, 28, 28), 0, torch.Generator().manual_seed(0), transductive=True).double()
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    fast = net.features(x)
    slow = textbook(net)(x).flatten(1)
    torch.testing.assert_close(fast, slow)
    params = list(net.parameters())
    for a, b in zip(torch.autograd.grad(fast.square().sum(), params), torch.autograd.grad(slow.square().sum(), params)):
        torch.testing.assert_close(a, b)


def test_reptile_omniglot_network_flattens_the_2x2_maps():
    net = nets.build("conv4-reptile-omniglot", (1, 28, 28), 5, torch.Generator().manual_seed(0))
    assert net.feature_dim == 256 and net.features(torch.rand(3, 1, 28, 28)).shape == (3, 256)
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 5)


def test_build_does_not_touch_the_global_rng():
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    nets.build("conv4", (1, 28, 28), 5, torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(2), expected)


def test_unknown_backbone_suggests():
    from algorithms import UnknownNameError
    with pytest.raises(UnknownNameError, match="did you mean 'conv4'"):
        nets.build("conv5", (1, 28, 28), 5, torch.Generator())
