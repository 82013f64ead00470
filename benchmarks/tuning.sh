#!/usr/bin/env bash
# Contrastive tuning vs the setfit library and frozen heads (issue 5), by the protocol.
# One output folder; fewshot bench resumes, so each step below adds rows to the same
# results.jsonl and a re-run only does what is missing. Run on an otherwise idle machine:
# fit times are compared side by side. Needs: pip install -e ".[dev,compare]".
set -euo pipefail
D=${SHARED:-../shared}/data
OUT=${OUT:-benchmarks/results/tuning}
MOBILENET=local-dir:${SHARED:-../shared}/models/mobilenetv2-tf-in1k
TEXT="$D/sst5 $D/amazon_counterfactual_en $D/ag_news $D/trec $D/banking77"
SMALL="$D/sst5 $D/amazon_counterfactual_en $D/ag_news $D/trec"
b() { fewshot bench "$@" --output "$OUT" --no-plots; }
# 1. tuned vs frozen, 8 shots, every text dataset
b $TEXT --methods tuned-logreg,logreg --shots 8 --seeds 0-4
# 2. images: tuned vs frozen MobileNetV2, 8 shots
b $D/hymenoptera $D/mnist --methods tuned-logreg,logreg --shots 8 --seeds 0-4 --image-encoder "$MOBILENET"
# 3. the setfit library, 8 shots (banking77: ~1,500 steps a fit, too slow here; see docs)
b $SMALL --methods setfit-lib --shots 8 --seeds 0-4
# 4. 64 shots
b $TEXT --methods tuned-logreg,logreg --shots 64 --seeds 0-4
# 5. the SetFit pair objective in the same loop, to pick the default objective
b $D/sst5 $D/amazon_counterfactual_en $D/trec --methods tuned-pairs-logreg --shots 8 --seeds 0-4
# 6. the setfit library at 64 shots (slow: seed 0 only on the smaller sets)
b $D/amazon_counterfactual_en $D/trec $D/sst5 --methods setfit-lib --shots 64 --seeds 0
