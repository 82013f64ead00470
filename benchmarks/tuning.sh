#!/usr/bin/env bash
# Contrastive tuning vs the setfit library and frozen heads (issue 5), by the protocol.
# One output folder; fewshot bench resumes, so each step adds rows to the same
# results.jsonl and a re-run only does what is missing. Fit times are compared side
# by side: run it on an otherwise idle machine. Needs: pip install -e ".[dev,compare]".
# Tables and plots: python benchmarks/tuning_report.py
set -euo pipefail
D=${SHARED:-../shared}/data
OUT=${OUT:-benchmarks/results/tuning}
MOBILENET=local-dir:${SHARED:-../shared}/models/mobilenetv2-tf-in1k
TEXT="$D/sst5 $D/amazon_counterfactual_en $D/ag_news $D/trec $D/banking77"
b() { fewshot bench "$@" --output "$OUT" --no-plots; }
# 1. tuned (default objective auto: cosine below 20 classes, else supcon) vs supcon vs
#    frozen, 8 shots, every text dataset (cosine on banking77: tuned-cosine-logreg).
#    The tuned-supcon-logreg rows in results.jsonl were run as "tuned-logreg" while
#    supcon was the default (sessions 2-3) and relabelled when cosine replaced it.
b $TEXT --methods tuned-logreg,tuned-supcon-logreg,logreg --shots 8 --seeds 0-4
# 2. images: tuned vs frozen MobileNetV2, 8 shots
b $D/hymenoptera $D/mnist --methods tuned-logreg,tuned-supcon-logreg,logreg --shots 8 \
  --seeds 0-4 --image-encoder "$MOBILENET"
# 3. the setfit library, 8 shots. Seeds 0-2 of these datasets are in the first full
#    bench run (benchmarks/results/bench-full.jsonl; same predictions, fit times taken
#    on a busy machine), so only seeds 3-4 are timed here.
b $D/sst5 $D/amazon_counterfactual_en $D/ag_news $D/trec --methods setfit-lib --shots 8 \
  --seeds ${SETFIT_SEEDS:-3,4}
#    banking77: ~20 minutes a fit here (seeds 0-2 run in session 6, 3-4 in session 7)
b $D/banking77 --methods setfit-lib --shots 8 --seeds ${SETFIT_SEEDS_B77:-0-4}
# 4. SetFit's pair objective in the same loop as tuned-logreg, to pick the default
b $D/amazon_counterfactual_en $D/trec --methods tuned-pairs-logreg --shots 8 --seeds 0-2
# 5. 64 shots, seeds 0-4 (banking77: ~2-3 minutes a tuned fit, 4,460 texts; session 8);
#    supcon at 64 shots was run on amazon_counterfactual_en and trec, seeds 0-2
b $TEXT --methods tuned-logreg,logreg --shots 64 --seeds ${SEEDS_64:-0-4}
b $D/amazon_counterfactual_en $D/trec --methods tuned-supcon-logreg --shots 64 --seeds 0-2
# 6. the setfit library at 64 shots: ~6 minutes a fit on amazon (128 texts), ~7 on
#    trec (384 short questions), ~11 on sst5 (320 sentences); banking77 (hours) not
#    run on this 2-core machine
b $D/amazon_counterfactual_en $D/trec $D/sst5 --methods setfit-lib --shots 64 \
  --seeds ${SETFIT_SEEDS_64:-0-4}
#    ag_news: ~18-24 minutes a fit; seeds 0-2 run in sessions 7-8, seeds 3-4 in session 9
b $D/ag_news --methods setfit-lib --shots 64 --seeds ${SETFIT_SEEDS_AG64:-0-4}
# 7. banking77, the setfit library at 64 shots: 11,150 steps a fit (4,460 texts), 1.0-1.1 s
#    a step on this 2-core CPU in session 12 (about 3.3 hours a seed, longer than a
#    session), so it is not run by default. On a GPU: SETFIT_B77_64=1 DEVICE=cuda. Its
#    fit times are then GPU times: tuning_report.py (GPU_FITS) compares accuracy only.
if [ -n "${SETFIT_B77_64:-}" ]; then
  b $D/banking77 --methods setfit-lib --shots 64 --seeds "${SETFIT_SEEDS_B77_64:-0-4}" \
    --device "${DEVICE:-auto}"
fi
