"""Per-label calibration of multi-label probabilities on go_emotions: does it help?

For each protocol split (shots x seeds) and head, the labelled rows' out-of-fold
probabilities (5 folds, as the fit makes them) are calibrated by each method below,
and scored two ways:

- ``cv``: on the labelled rows only (nested: each outer fold's rows calibrated, and
  thresholded, by maps fitted on the other folds' out-of-fold rows). This is what a
  default may be chosen on.
- ``test``: the map fitted on every labelled row applied to the final head's
  probabilities of the test split (5,427 comments), thresholds chosen on the
  calibrated out-of-fold probabilities. Reported, never chosen on.

Scores: per-label Brier and per-label ECE (15 equal-width bins), each the mean over
labels; macro-F1 and micro-F1 after per-label thresholds.

    python benchmarks/multilabel_calibration.py --shots 8,64 --seeds 0-4

Rows go to benchmarks/results/multilabel_calibration.jsonl (a killed run resumes);
``--report`` prints the mean ± sd table from them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def per_label_scores(P: np.ndarray, Y: np.ndarray, n_bins: int = 15) -> tuple[float, float]:
    """(mean over labels of the Brier score, mean over labels of the binary ECE)."""
    brier = float(((P - Y) ** 2).mean(axis=0).mean())
    bins = np.clip(np.ceil(P * n_bins).astype(int) - 1, 0, n_bins - 1)
    eces = []
    for j in range(P.shape[1]):
        e = 0.0
        for b in np.unique(bins[:, j]):
            m = bins[:, j] == b
            e += m.sum() * abs(Y[m, j].mean() - P[m, j].mean())
        eces.append(e / len(P))
    return brier, float(np.mean(eces))


def f1s(P: np.ndarray, Y: np.ndarray, cut: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    pred = (cut <= P).astype(int)
    return (float(f1_score(Y, pred, average="macro", zero_division=0)),
            float(f1_score(Y, pred, average="micro", zero_division=0)))


def report(path: Path) -> None:
    """A Markdown table of mean ± sd over seeds, per shots, head and method."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    methods = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    keys = sorted({(r["shots"], r["head"]) for r in rows},
                  key=lambda k: (k[0], ["logreg", "knn", "centroid"].index(k[1])))
    cols = [("cv", "brier"), ("cv", "ece"), ("cv", "macro_f1"), ("test", "brier"),
            ("test", "ece"), ("test", "macro_f1"), ("test", "micro_f1")]
    print("| shots | head | method | seeds | " + " | ".join(f"{a} {b}" for a, b in cols) + " |")
    print("| ---: | --- | --- | ---: |" + " ---: |" * len(cols))
    for shots, head in keys:
        group = [r for r in rows if r["shots"] == shots and r["head"] == head]
        for m in methods:
            cells = []
            for a, b in cols:
                v = np.array([r[m][a][b] for r in group])
                digits = 4 if b in ("brier", "ece") else 3
                sd = v.std(ddof=1) if len(v) > 1 else 0.0
                cells.append(f"{v.mean():.{digits}f} ± {sd:.{digits}f}")
            print(f"| {shots} | {head} | {m} | {len(group)} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", action="store_true",
                    help="Print the table of the rows already in --out and stop.")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--shots", default="8,64")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--heads", default="logreg,knn,centroid")
    ap.add_argument("--methods", default="none,platt,platt_per_label,platt_per_label_raw")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "multilabel_calibration.jsonl"))
    args = ap.parse_args()
    if args.report:
        report(Path(args.out))
        return
    from sklearn.base import clone
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import MultiLabelBinarizer

    from fewshot import few_shot_indices, load_dataset
    from fewshot.cache import EmbeddingCache, embed
    from fewshot.confidence.calibration import fit_label_calibrator
    from fewshot.encoders import get_encoder
    from fewshot.heads import make_head
    from fewshot.training.fitting import label_thresholds

    data = Path(args.shared) / "data" / "go_emotions"
    train, test = load_dataset(data, "train"), load_dataset(data, "test")
    names = train.classes
    binarizer = MultiLabelBinarizer(classes=names)
    Y_test = binarizer.fit_transform(test.labels)
    enc = get_encoder("all-MiniLM-L6-v2", "text", show_progress=False)
    cache = EmbeddingCache()
    Z_test = embed(enc, test.items, cache, show_progress=False)
    first, last = (int(v) for v in args.seeds.split("-"))
    methods = args.methods.split(",")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["shots"], r["seed"], r["head"]))
    for n_shot in (int(v) for v in args.shots.split(",")):
        for seed in range(first, last + 1):
            few = train.subset(few_shot_indices(train.labels, n_shot, seed))
            Z = embed(enc, few.items, cache, show_progress=False)
            Y = binarizer.transform(few.labels)
            for head in args.heads.split(","):
                if (n_shot, seed, head) in done:
                    continue
                start = time.perf_counter()
                template = make_head(head)
                final = clone(template).fit(Z, Y)
                P_test = final.predict_proba(Z_test).astype(np.float64)
                oof = np.zeros(Y.shape)
                for tr, te in KFold(5, shuffle=True, random_state=0).split(Z):
                    oof[te] = clone(template).fit(Z[tr], Y[tr]).predict_proba(Z[te])
                outer = KFold(5, shuffle=True, random_state=1).split(Z)
                folds = [te for _, te in outer]
                row: dict = {"shots": n_shot, "seed": seed, "head": head, "n_train": len(Z)}
                for method in methods:
                    # cv: nested over the labelled rows
                    cal_cv = np.zeros_like(oof)
                    cut_cv = np.zeros_like(oof)
                    for te in folds:
                        tr = np.setdiff1d(np.arange(len(Z)), te)
                        cal = fit_label_calibrator(method, oof[tr], Y[tr])
                        cal_cv[te] = cal.transform(oof[te])
                        cut_cv[te] = label_thresholds(cal.transform(oof[tr]), Y[tr])[0]
                    brier, ece = per_label_scores(cal_cv, Y)
                    macro, micro = f1s(cal_cv, Y, cut_cv)
                    cal = fit_label_calibrator(method, oof, Y)
                    P = cal.transform(P_test)
                    cut = label_thresholds(cal.transform(oof), Y)[0]
                    t_brier, t_ece = per_label_scores(P, Y_test)
                    t_macro, t_micro = f1s(P, Y_test, cut)
                    row[method] = {
                        "cv": {"brier": round(brier, 5), "ece": round(ece, 5),
                               "macro_f1": round(macro, 4), "micro_f1": round(micro, 4)},
                        "test": {"brier": round(t_brier, 5), "ece": round(t_ece, 5),
                                 "macro_f1": round(t_macro, 4), "micro_f1": round(t_micro, 4)},
                    }
                row["seconds"] = round(time.perf_counter() - start, 2)
                print(json.dumps(row), flush=True)
                with open(out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
