#!/bin/bash
# The best setting so far (log objective, meta_lr 0.003, flat) on 16 seeds side by side, cpu-profile budget
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
# METABENCH_DATA: a folder holding mnist/MNIST/raw (the .gz files are enough); $OUT: where the tarball goes
# the paper's recipe, the lstm-optimizer defaults when this ran (the defaults now add a NAG-imitation warm start)
PAPER="--set lstm-optimizer.imitate=null --set lstm-optimizer.imitate_iters=0 --set lstm-optimizer.imitate_lr=null --set lstm-optimizer.meta_loss=sum --set lstm-optimizer.meta_lr=0.01 --set lstm-optimizer.select_every=50"
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
W=/tmp/seeds; mkdir -p $W
for s in $(seq 0 15); do
  timeout 330 python -m bench run --benchmark mnist-base --algorithm lstm-optimizer --profile cpu --seed $s --device cuda \
    $PAPER --set budget.log_every=25 --set lstm-optimizer.select_every=25 --set lstm-optimizer.meta_loss=log \
    --set lstm-optimizer.meta_lr=0.003 --no-figures --no-progress --out $W/s$s > $W/s$s.log 2>&1 &
done
wait
grep -H "final_loss" $W/*.log
for d in $W/s*/; do rm -rf $d/checkpoints $d/cells $d/episodes.csv; done
tar czf $OUT/seeds.tgz -C $W .
