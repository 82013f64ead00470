#!/usr/bin/env bash
# Human in the loop: accept what the model is sure of, send the rest to review,
# and check the labelled examples for likely mistakes.
#   1. train: calibrated probabilities (temperature scaling on out-of-fold predictions)
#   2. review: the threshold that cross-validation says keeps 90% precision, plus
#      conformal prediction sets that hold the true label 90% of the time
#   3. audit: labelled examples ranked by how likely their label is wrong, and
#      near-duplicates between the training and test data
# Run from the repository root:  bash examples/human_in_the_loop.sh [OUT]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-runs/support-loop}"
data="$here/data/support"

fewshot train "$data" --output "$out/model" --force
fewshot review "$out/model" "$data/test.jsonl" --target-precision 0.9 --conformal 0.9 \
  --output "$out/review" --force
cat "$out/review/summary.json"
fewshot audit "$data" --test "$data/test.jsonl" --output "$out/audit.jsonl" --top 3 --force
