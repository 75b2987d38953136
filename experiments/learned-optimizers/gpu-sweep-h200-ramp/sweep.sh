#!/bin/bash
# A sweep on a lent GPU: 16 lstm-optimizer cells side by side, cpu-profile budget (150 meta-iterations)
source "$(dirname "$0")/../_gpu_sweep.sh"
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
