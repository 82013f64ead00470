"""Selection benchmarks, on frozen all-MiniLM-L6-v2 embeddings.

    python benchmarks/selection.py quality   # demonstration selection, no LLM needed
    python benchmarks/selection.py active    # what-to-label-next simulation
    python benchmarks/selection.py all

quality: for every test query, select k=8 examples from the whole train split and
report (a) the fraction of selected examples whose label is the query's true
label, (b) the accuracy of the selection's majority label (ties: the label with
the higher summed similarity) and (c) the number of distinct labels selected.
random is averaged over seeds 0-4.

active: start with no labels; in rounds, select items until B = 1x, 2x, 4x, 8x
the number of classes are labelled (cumulative), reveal their true labels, fit
logistic regression on the frozen embeddings, score accuracy on the test split.
Five seeds per strategy. uncertain's first round is random (there is no model
yet); hybrid's first round is diverse. Logistic regression uses balanced class
weights, since the labels a strategy picks are rarely balanced.

With --descriptions, diverse (and hybrid's first round) are guided by the label
descriptions in benchmarks/label_descriptions (banking77's are its label names,
"A banking customer query about card arrival.").

Writes benchmarks/results/selection_{quality,active}.jsonl, prints markdown tables
and saves docs/img/active_learning.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FEWSHOT_SHARED", ROOT.parent / "shared"))
DATASETS = ["sst5", "ag_news", "trec", "banking77"]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str):
    from fewshot.cache import EmbeddingCache, embed
    from fewshot.data import load_dataset
    from fewshot.encoders import TextEncoder

    enc = TextEncoder("all-MiniLM-L6-v2", show_progress=True)
    train = load_dataset(SHARED / "data" / name, "train")
    test = load_dataset(SHARED / "data" / name, "test")
    cache = EmbeddingCache()
    return enc, train, test, embed(enc, train.items, cache), embed(enc, test.items, cache)


def quality(k: int, datasets: list[str]) -> list[dict]:
    from fewshot.selection import ExampleSelector

    rows = []
    for name in datasets:
        enc, train, test, Xtr, Xte = _load(name)
        y_test = test.labels
        for strategy, seeds in (("nearest", [0]), ("mmr", [0]), ("balanced", [0]),
                                ("random", [0, 1, 2, 3, 4])):
            per_seed = []
            for seed in seeds:
                sel = ExampleSelector(enc, k=k, strategy=strategy, seed=seed, cache=False)
                sel.fit(train.items, train.labels, embeddings=Xtr)
                t = time.perf_counter()
                chosen = sel.select_embeddings(Xte)
                seconds = time.perf_counter() - t
                match, majority, coverage = [], [], []
                for truth, demos in zip(y_test, chosen, strict=True):
                    labels = [d.label for d in demos]
                    match.append(sum(lab == truth for lab in labels) / len(labels))
                    weight = Counter()
                    for d in demos:
                        weight[d.label] += 1 + 1e-3 * d.score  # count, then similarity
                    majority.append(weight.most_common(1)[0][0] == truth)
                    coverage.append(len(set(labels)))
                per_seed.append((np.mean(match), np.mean(majority), np.mean(coverage), seconds))
            m = np.mean(per_seed, axis=0)
            rows.append({"bench": "selection_quality", "dataset": name, "strategy": strategy,
                         "k": k, "n_pool": len(train), "n_queries": len(test),
                         "n_classes": len(train.classes), "label_match": float(m[0]),
                         "majority_accuracy": float(m[1]), "label_coverage": float(m[2]),
                         "select_seconds": float(m[3]), "seeds": len(seeds)})
            print(json.dumps(rows[-1]))
    return rows


def _fit_score(Xtr, ytr, Xte, yte) -> tuple[float, object]:
    """Test accuracy of logistic regression on the labelled rows, and the head."""
    from fewshot.heads import LogisticRegressionHead

    if len(set(ytr)) < 2:  # one label seen: predict it
        return float(np.mean(np.asarray(yte) == ytr[0])), None
    # Labels picked by a strategy are rarely balanced; without class weights a
    # 4-to-16-example logistic regression mostly predicts its largest class.
    head = LogisticRegressionHead(class_weight="balanced").fit(Xtr, np.asarray(ytr))
    return float(np.mean(head.predict(Xte) == np.asarray(yte))), head


def _informative(Z: np.ndarray, labels: np.ndarray) -> bool:
    """fewshot suggest's test: is the labelled items' model better than a guess?"""
    from fewshot.confidence.calibration import out_of_fold_proba
    from fewshot.heads import LogisticRegressionHead
    from fewshot.selection.annotation import informative_model

    classes, y_idx = np.unique(labels, return_inverse=True)
    head = LogisticRegressionHead(class_weight="balanced")
    proba, held = out_of_fold_proba(head, Z, y_idx, len(classes))
    return informative_model(proba[held], y_idx[held])[0]


def _prototypes(enc, name: str) -> np.ndarray:
    """The dataset's label descriptions (benchmarks/label_descriptions), embedded."""
    from fewshot.cache import EmbeddingCache, embed

    desc = json.loads((ROOT / "benchmarks" / "label_descriptions" / f"{name}.json").read_text())
    return embed(enc, [desc[c] for c in sorted(desc)], EmbeddingCache())


def active(seeds: list[int], multiples: list[int], datasets: list[str],
           descriptions: bool = False) -> list[dict]:
    from fewshot.selection import suggest

    rows = []
    for name in datasets:
        enc, train, test, Xtr, Xte = _load(name)
        protos = _prototypes(enc, name) if descriptions else None
        y = np.asarray(train.labels)
        n_classes = len(train.classes)
        budgets = [m * n_classes for m in multiples]
        for strategy in ("random", "diverse", "uncertain", "hybrid"):
            for seed in seeds:
                labelled: list[int] = []
                head = None
                t0 = time.perf_counter()
                for b in budgets:
                    new = b - len(labelled)
                    proba = head.predict_proba(Xtr) if head is not None else None
                    if strategy == "hybrid" and proba is not None and not _informative(
                            Xtr[labelled], y[labelled]):
                        proba = None  # margins of a model no better than a guess: diverse
                    if strategy == "random" or (strategy == "uncertain" and proba is None):
                        s = "random"
                    elif strategy == "hybrid" and proba is None:
                        s = "diverse"
                    else:
                        s = strategy
                    guided = protos if s in ("diverse", "hybrid") else None
                    picks = suggest(Xtr, new, strategy=s, labelled=labelled, proba=proba,
                                    seed=seed, prototypes=guided)
                    labelled += [p.index for p in picks]
                    acc, head = _fit_score(Xtr[labelled], y[labelled].tolist(), Xte,
                                              test.labels)
                    rows.append({"bench": "active_learning", "dataset": name,
                                 "strategy": strategy, "seed": seed, "budget": b,
                                 "descriptions": descriptions,
                                 "multiple": b // n_classes, "n_classes": n_classes,
                                 "labels_seen": int(len(set(y[labelled].tolist()))),
                                 "accuracy": acc,
                                 "seconds": time.perf_counter() - t0})
                print(name, strategy, seed,
                      [round(r["accuracy"], 3) for r in rows[-len(budgets):]])
    return rows


def _tables(quality_rows: list[dict], active_rows: list[dict]) -> str:
    out = []
    if quality_rows:
        out += ["| dataset | strategy | label match (a) | majority acc (b) | labels covered (c) |",
                "| --- | --- | ---: | ---: | ---: |"]
        for r in quality_rows:
            out.append(f"| {r['dataset']} ({r['n_classes']} classes) | {r['strategy']} | "
                       f"{r['label_match']:.3f} | {r['majority_accuracy']:.3f} | "
                       f"{r['label_coverage']:.2f} |")
        out.append("")
    if active_rows:
        mults = sorted({r["multiple"] for r in active_rows})
        out += ["| dataset | strategy | " + " | ".join(f"B={m}x" for m in mults) + " |",
                "| --- | --- |" + " ---: |" * len(mults)]
        for name in DATASETS:
            for strategy in ("random", "diverse", "uncertain", "hybrid"):
                cells = []
                for m in mults:
                    accs = [r["accuracy"] for r in active_rows if r["dataset"] == name
                            and r["strategy"] == strategy and r["multiple"] == m]
                    if accs:
                        cells.append(f"{statistics.fmean(accs):.3f} +- "
                                     f"{statistics.stdev(accs) if len(accs) > 1 else 0:.3f}")
                if cells:
                    out.append(f"| {name} | {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _plot(active_rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DATASETS), figsize=(4.2 * len(DATASETS), 3.4))
    for ax, name in zip(axes, DATASETS, strict=True):
        for strategy in ("random", "diverse", "uncertain", "hybrid"):
            pts = {}
            for r in active_rows:
                if r["dataset"] == name and r["strategy"] == strategy:
                    pts.setdefault(r["budget"], []).append(r["accuracy"])
            if not pts:
                continue
            xs = sorted(pts)
            ax.errorbar(xs, [np.mean(pts[x]) for x in xs], yerr=[np.std(pts[x]) for x in xs],
                        marker="o", capsize=3, label=strategy)
        ax.set_xscale("log", base=2)
        ax.set_title(name)
        ax.set_xlabel("labelled items (budget)")
        ax.set_ylabel("test accuracy (logreg)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["quality", "active", "all"])
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--multiples", default="1,2,4,8")
    p.add_argument("--datasets", default=",".join(DATASETS),
                   help="comma-separated subset of " + ",".join(DATASETS))
    p.add_argument("--descriptions", action="store_true",
                   help="guide diverse and hybrid's first round by the label descriptions in "
                   "benchmarks/label_descriptions (default suffix _descriptions)")
    p.add_argument("--suffix", default="",
                   help="written to selection_<what><suffix>.jsonl (and no plot) when set, "
                   "so a side run leaves the recorded results alone")
    a = p.parse_args()
    if a.descriptions and a.what != "active":
        p.error("--descriptions guides the active-learning run only; use it with 'active'")
    if a.descriptions and not a.suffix:
        a.suffix = "_descriptions"
    datasets = a.datasets.split(",")
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        p.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    q_rows: list[dict] = []
    a_rows: list[dict] = []
    if a.what in ("quality", "all"):
        q_rows = quality(a.k, datasets)
        (RESULTS / f"selection_quality{a.suffix}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in q_rows))
    if a.what in ("active", "all"):
        a_rows = active([int(s) for s in a.seeds.split(",")],
                        [int(m) for m in a.multiples.split(",")], datasets, a.descriptions)
        (RESULTS / f"selection_active{a.suffix}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in a_rows))
        if not a.suffix:
            _plot(a_rows, ROOT / "docs" / "img" / "active_learning.png")
        elif a.descriptions and a.suffix == "_descriptions":
            _plot(a_rows, ROOT / "docs" / "img" / "active_learning_descriptions.png")
    print(_tables(q_rows, a_rows))


if __name__ == "__main__":
    main()
