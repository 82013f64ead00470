"""Cheaper tuning against the default, on one protocol split: accuracy, MCC and tuning time.

Each setting is a dict of ContrastiveTuner arguments; the default (``"{}"``) runs in the same
process, so its time is the reference the others are compared with. The head is logistic
regression on the tuned embeddings, scored on the whole test split.

    python benchmarks/tuning_speed.py trec 0 "{}" "{'train_layers': 2, 'learning_rate': 3e-4}" \\
        "{'epochs': 10, 'learning_rate': 2e-4}" --out benchmarks/results/tuning_speed.jsonl
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import numpy as np
from export_speed import read_jsonl
from sklearn.metrics import matthews_corrcoef

from fewshot.data.splits import few_shot_indices
from fewshot.encoders.text import TextEncoder
from fewshot.training.fitting import fit_embeddings
from fewshot.tuning import ContrastiveTuner

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("seed", type=int)
    parser.add_argument("settings", nargs="+", help="tuner arguments as a Python dict literal")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    folder = SHARED / "data" / args.dataset
    texts, labels = read_jsonl(folder / "train.jsonl")
    idx = few_shot_indices(labels, args.shots, args.seed)
    x, y = [texts[i] for i in idx], [labels[i] for i in idx]
    x_test, y_test = read_jsonl(folder / "test.jsonl")
    base = TextEncoder("all-MiniLM-L6-v2", device="cpu", show_progress=False)
    base.fit()
    for spec in args.settings:
        settings = ast.literal_eval(spec)
        enc = base.loaded_copy()
        start = time.perf_counter()
        report = ContrastiveTuner(show_progress=False, seed=args.seed, **settings).tune(enc, x, y)
        seconds = time.perf_counter() - start
        model = fit_embeddings(enc, enc.encode(x, show_progress=False), y, head="logreg",
                               calibration=None)
        pred = [str(p) for p in model.head.predict(enc.encode(x_test, show_progress=False))]
        row = {"dataset": args.dataset, "seed": args.seed, "shots": args.shots,
               "settings": settings, "accuracy": float(np.mean(np.array(pred) == y_test)),
               "mcc": float(matthews_corrcoef(y_test, pred)), "tune_seconds": round(seconds, 1),
               "steps": report.steps, "final_loss": report.epoch_losses[-1]}
        print(json.dumps(row), flush=True)
        if args.out:
            with args.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
