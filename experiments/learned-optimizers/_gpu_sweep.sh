# Sourced by the GPU sweep scripts in the sub-folders beside this file: the shared setup and run(), which starts one mnist-base
# lstm-optimizer cell in the background at the cpu profile's budget. Set LOG_EVERY before sourcing (default 25).
# METABENCH_DATA: a folder holding mnist/MNIST/raw (the .gz files are enough); $OUT: where the tarball goes.
cd "$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import torch; print(torch.__version__)"
W=/tmp/sw; mkdir -p $W
# the paper's recipe, the lstm-optimizer defaults when these ran (the defaults now add a NAG-imitation warm start)
PAPER="--set lstm-optimizer.imitate=null --set lstm-optimizer.imitate_iters=0 --set lstm-optimizer.imitate_lr=null --set lstm-optimizer.meta_loss=sum --set lstm-optimizer.meta_lr=0.01 --set lstm-optimizer.select_every=50"
run() { name=$1; seed=$2; shift 2
  python -m bench run --benchmark mnist-base --algorithm lstm-optimizer --profile cpu --seed $seed --device cuda \
    $PAPER --set budget.log_every=${LOG_EVERY:-25} --set lstm-optimizer.select_every=25 "$@" --no-figures \
    --no-progress --out $W/$name-s$seed > $W/$name-s$seed.log 2>&1 &
}
