#!/bin/bash
# The LSTM optimizer warm-started by imitating a tuned hand-designed optimizer (Chen et al. 2020), then
# meta-trained; 16 cells side by side on a lent GPU at the cpu profile's budget (150 meta-iterations)
# usage: sweep.sh 1|2 (the two calls)
LOG_EVERY=10
source "$(dirname "$0")/../_gpu_sweep.sh"
ADAM="--set lstm-optimizer.imitate=adam --set lstm-optimizer.teacher_lr=0.03"
NAG="--set lstm-optimizer.imitate=nag --set lstm-optimizer.teacher_lr=1.0"
I() { echo "--set lstm-optimizer.imitate_iters=$1"; }
L="--set lstm-optimizer.meta_loss=log"; M() { echo "--set lstm-optimizer.meta_lr=$1"; }
R="--set lstm-optimizer.loss_weights=ramp"
case "${1:-1}" in
1)  # first call: Adam or NAG as the teacher, 25-150 imitation iterations, then the sum or log meta-objective
  run A50-sum-01 0 $ADAM $(I 50); run A50-sum-01 1 $ADAM $(I 50)
  run A50-log-003 0 $ADAM $(I 50) $L $(M 0.003); run A50-log-003 1 $ADAM $(I 50) $L $(M 0.003)
  run A50-sum-003 0 $ADAM $(I 50) $(M 0.003); run A50-sum-003 1 $ADAM $(I 50) $(M 0.003)
  run A25-log-003 0 $ADAM $(I 25) $L $(M 0.003); run A25-log-003 1 $ADAM $(I 25) $L $(M 0.003)
  run A100-log-003 0 $ADAM $(I 100) $L $(M 0.003); run A100-log-003 1 $ADAM $(I 100) $L $(M 0.003)
  run N50-log-003 0 $NAG $(I 50) $L $(M 0.003); run N50-log-003 1 $NAG $(I 50) $L $(M 0.003)
  run A150-only 0 $ADAM $(I 150); run A150-only 1 $ADAM $(I 150)
  run A50-log-001 0 $ADAM $(I 50) $L $(M 0.001); run A50-log-001 1 $ADAM $(I 50) $L $(M 0.001) ;;
2)  # second call: NAG (the best first result) as the teacher
  run N150-only-01 0 $NAG $(I 150); run N150-only-01 1 $NAG $(I 150)
  run N150-only-03 0 $NAG $(I 150) $(M 0.03); run N150-only-03 1 $NAG $(I 150) $(M 0.03)
  run N25-log-003 0 $NAG $(I 25) $L $(M 0.003); run N25-log-003 1 $NAG $(I 25) $L $(M 0.003)
  run N50-log-001 0 $NAG $(I 50) $L $(M 0.001); run N50-log-001 1 $NAG $(I 50) $L $(M 0.001)
  run N50-log-003-ramp 0 $NAG $(I 50) $L $(M 0.003) $R; run N50-log-003-ramp 1 $NAG $(I 50) $L $(M 0.003) $R
  run N50-log-003 2 $NAG $(I 50) $L $(M 0.003); run N50-log-003 3 $NAG $(I 50) $L $(M 0.003)
  run N75-log-003 0 $NAG $(I 75) $L $(M 0.003); run N75-log-003 1 $NAG $(I 75) $L $(M 0.003)
  run N50-log-0003 0 $NAG $(I 50) $L $(M 0.0003); run N50-log-0003 1 $NAG $(I 50) $L $(M 0.0003) ;;
esac
wait
# one line per cell: test final loss (mean, 95% CI over the 100 frozen runs), auc, the snapshot validation kept
for d in $W/*/; do python - "$d" <<'PY'
import csv, sys
d = sys.argv[1]
rows = {r["metric"]: r for r in csv.DictReader(open(d + "summary.csv")) if r["seed"] != "all"}
sel = list(csv.DictReader(open(d + "snapshot_selection.csv")))
chosen = [r["iteration"] for r in sel if r["chosen"] == "True"]
f, a = rows["final_loss"], rows["auc"]
print(d.rstrip("/").split("/")[-1], f"final_loss {float(f['mean']):.3f} +- {float(f['ci95']):.3f}",
      f"auc {float(a['mean']):.3f}", "kept iteration", *chosen,
      "validation", " ".join(f"{r['iteration']}:{float(r['final_loss']):.3f}" for r in sel))
PY
done | tee $W/results.txt
tar czf $OUT/sweep${1:-1}.tgz -C $W --exclude=checkpoints .
