#!/usr/bin/env bash
# Multi-label tuning vs the setfit library on go_emotions (protocol splits, all-MiniLM-L6-v2).
# One bench output folder; each step is its own locked run (timings), and every step resumes,
# so re-running the script only does what is missing.
#   bash benchmarks/multilabel_tuned.sh            # -> benchmarks/results/multilabel_tuned/
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
DATA=${FEWSHOT_SHARED:-../shared}/data/go_emotions
OUT=benchmarks/results/multilabel_tuned
STEPS=${STEPS:-"8:0 8:1 64:0 8:2 8:3 8:4 64:1"}
run() {  # shots seed methods
  flock /tmp/fewshot-bench.lock nice -n 5 fewshot bench "$DATA" -o "$OUT" --shots "$1" \
    --seeds "$2" --methods "$3" --encoder all-MiniLM-L6-v2 --no-plots || echo "step failed: $*"
}
for step in $STEPS; do
  shots=${step%%:*}; seed=${step##*:}
  if [ "$shots" = 8 ]; then
    run 8 "$seed" logreg,tuned-logreg,tuned-shared-logreg
    run 8 "$seed" setfit-lib
  else
    run "$shots" "$seed" logreg,tuned-logreg
  fi
done
