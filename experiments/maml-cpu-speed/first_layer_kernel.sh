#!/bin/sh
# The MAML row of `metabench perf` with the first-layer C kernel off (METABENCH_NATIVE=0: the PyTorch path of
# algorithms/nets.py) and on, three alternating runs of each, real Omniglot when METABENCH_DATA points at it.
# Run from the repository root: sh experiments/maml-cpu-speed/first_layer_kernel.sh
for i in 1 2 3; do
    printf 'kernel off  '; METABENCH_NATIVE=0 python experiments/maml-cpu-speed/maml_ratio.py . 2>/dev/null
    printf 'kernel on   '; python experiments/maml-cpu-speed/maml_ratio.py . 2>/dev/null
done
