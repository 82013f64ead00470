"""Multi-label few-shot on go_emotions: frozen all-MiniLM-L6-v2, each head, the protocol's
multi-label splits, per-label thresholds against one global 0.5, and min_labels=1.

    python benchmarks/multilabel.py --shots 8,64 --seeds 0-4

Rows go to benchmarks/results/multilabel.jsonl; the test split is embedded once (cached).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--shots", default="8,64")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--heads", default="logreg,knn,centroid")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "multilabel.jsonl"))
    args = ap.parse_args()
    from fewshot import FewShotClassifier, few_shot_indices, load_dataset
    from fewshot.metrics import multilabel_report

    data = Path(args.shared) / "data" / "go_emotions"
    train, test = load_dataset(data, "train"), load_dataset(data, "test")
    first, last = (int(v) for v in args.seeds.split("-"))
    rows = []
    for n_shot in (int(v) for v in args.shots.split(",")):
        for seed in range(first, last + 1):
            few = train.subset(few_shot_indices(train.labels, n_shot, seed))
            for head in args.heads.split(","):
                start = time.perf_counter()
                clf = FewShotClassifier("all-MiniLM-L6-v2", head, show_progress=False)
                clf.fit(few.items, few.labels)
                fit_s = time.perf_counter() - start
                proba = clf.predict_proba(test.items)
                labels = [str(c) for c in clf.classes_]
                row = {"shots": n_shot, "seed": seed, "head": head, "n_train": len(few),
                       "fit_seconds": round(fit_s, 2)}
                for name, params in (("per_label", {}), ("global_0.5", {"threshold": 0.5}),
                                     ("min_labels_1", {"min_labels": 1})):
                    chosen = clf.model_.decide(proba, **params)
                    pred = [[labels[j] for j in np.flatnonzero(r)] for r in chosen]
                    rep = multilabel_report(test.labels, pred, labels)
                    row[name] = {k: round(rep[k], 4) for k in
                                 ("macro_f1", "micro_f1", "samples_f1", "subset_accuracy")}
                    row[name]["empty_rows"] = int(sum(not p for p in pred))
                rows.append(row)
                print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
