#!/bin/bash
# issue 5 sweep on the lent GPU: 16 lstm-optimizer cells side by side, cpu-profile budget (150 meta-iterations)
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
# METABENCH_DATA: a folder holding mnist/MNIST/raw (the .gz files are enough); $OUT: where the tarball goes
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch; print(torch.__version__)"
W=/tmp/sw; mkdir -p $W
# the paper's recipe, the lstm-optimizer defaults when this ran (the defaults now add a NAG-imitation warm start)
PAPER="--set lstm-optimizer.imitate=null --set lstm-optimizer.imitate_iters=0 --set lstm-optimizer.imitate_lr=null --set lstm-optimizer.meta_loss=sum --set lstm-optimizer.meta_lr=0.01 --set lstm-optimizer.select_every=50"
run() { name=$1; seed=$2; shift 2
  python -m bench run --benchmark mnist-base --algorithm lstm-optimizer --profile cpu --seed $seed --device cuda \
    $PAPER --set budget.log_every=25 --set lstm-optimizer.select_every=25 "$@" --no-figures --no-progress \
    --out $W/$name-s$seed > $W/$name-s$seed.log 2>&1 &
}
L="--set lstm-optimizer.meta_loss=log"; A="--set lstm-optimizer.meta_lr=0.003"
R="--set lstm-optimizer.loss_weights=ramp"
run L 0 $L $A; run L 1 $L $A
run LR 0 $L $A $R; run LR 1 $L $A $R; run LR 2 $L $A $R
run SR 0 $R; run SR 1 $R
run LR-lr002 0 $L $R --set lstm-optimizer.meta_lr=0.002; run LR-lr002 1 $L $R --set lstm-optimizer.meta_lr=0.002
run LR-u30 0 $L $A $R --set lstm-optimizer.unroll=30; run LR-u30 1 $L $A $R --set lstm-optimizer.unroll=30
run LR-os02 0 $L $A $R --set lstm-optimizer.output_scale=0.2; run LR-os02 1 $L $A $R --set lstm-optimizer.output_scale=0.2
run LR-p5 0 $L $A $R --set lstm-optimizer.preprocess_p=5; run LR-p5 1 $L $A $R --set lstm-optimizer.preprocess_p=5
run LR-lr005 0 $L $R --set lstm-optimizer.meta_lr=0.005
wait
grep -H "final_loss" $W/*.log
tar czf $OUT/sweep.tgz -C $W .
