"""How far float32 MAML meta-gradients are from a float64 one on the `metabench perf` batch (Omniglot 5w1s, 32 tasks,
15 queries per class, Conv-4 with 64 filters, one inner step at 0.4): ours with the first-layer C kernel, ours on
PyTorch ops only (METABENCH_NATIVE's effect, switched here in-process), and the textbook loop of bench/perf.py in
float32, each against the textbook loop in float64 with the same weights. The measure is the largest entry-wise
difference over the largest entry, per parameter tensor, maximised over tensors.
Run from the repository root: python experiments/maml-cpu-speed/float32_meta_gradient_gap.py
"""
import copy

import torch
from _setup import maml_and_batch

from algorithms import native
from bench import perf

(maml,), batch = maml_and_batch(32)
net = maml.net
textbook = perf.textbook_conv4(5)
names = {}
with torch.no_grad():  # the textbook net with our weights (its conv biases zero: batch norm removes them anyway)
    for i, block in enumerate(net.blocks):
        textbook[4 * i].weight.copy_(block.conv.weight)
        textbook[4 * i].bias.zero_()
        textbook[4 * i + 1].weight.copy_(block.norm.weight)
        textbook[4 * i + 1].bias.copy_(block.norm.bias)
        names.update({f"blocks.{i}.conv.weight": f"{4 * i}.weight", f"blocks.{i}.norm.weight": f"{4 * i + 1}.weight",
                      f"blocks.{i}.norm.bias": f"{4 * i + 1}.bias"})
    textbook[-1].weight.copy_(net.head.weight)
    textbook[-1].bias.copy_(net.head.bias)
names.update({"head.weight": "17.weight", "head.bias": "17.bias"})
batch64 = copy.deepcopy(batch)
batch64.support_x, batch64.query_x = batch64.support_x.double(), batch64.query_x.double()
truth = perf.reference_maml_step(copy.deepcopy(textbook).double(), batch64)


def gap(grads: dict, truth_name=lambda name: name) -> float:
    """max over tensors of max |grad - truth| / max |truth|"""
    return max(((g.double() - truth[truth_name(k)]).abs().max() / truth[truth_name(k)].abs().max()).item()
               for k, g in grads.items())


ours = maml.meta_gradients(batch)[0]
covers = native.covers
native.covers = lambda x, weight: False
ours_pytorch = maml.meta_gradients(batch)[0]
native.covers = covers
textbook32 = perf.reference_maml_step(textbook, batch)
textbook32 = {k: v for k, v in textbook32.items() if k in names.values()}  # not the conv biases (true gradient 0)
print(f"ours, first-layer kernel      {gap(ours, names.get):.1e}")
print(f"ours, PyTorch ops only        {gap(ours_pytorch, names.get):.1e}")
print(f"textbook loop in float32      {gap(textbook32):.1e}")
