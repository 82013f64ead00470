"""Long texts: long_texts="truncate" vs "chunk" on documents longer than the model reads.

    python benchmarks/long_texts.py [--seeds 0-4] [--train-docs 80] [--test-docs 160]

Each document joins 12 ag_news articles in a seeded random order: 5 of its label's class
and 3, 2 and 2 of the other three, so the label is the majority topic and the first 256
tokens (about 5 articles) often show another. Train documents come from ag_news train,
test documents from ag_news test; the 8-shot training rows per seed are
``fewshot.data.few_shot_indices`` on the built train set. A logistic-regression head
(``logreg``) is fitted on frozen all-MiniLM-L6-v2 embeddings of each mode. Prints a
markdown table and appends JSON lines to --output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FEWSHOT_SHARED", ROOT.parent / "shared"))
MIX = (5, 3, 2, 2)  # articles of the label's class, then of the other three (shuffled)


def build_docs(split: str, per_class: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """``per_class`` documents of each class from ag_news ``split``, articles drawn without
    replacement across all documents."""
    lines = (SHARED / "data" / "ag_news" / f"{split}.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    classes = sorted({r["label"] for r in rows})
    pools = {c: list(rng.permutation([r["text"] for r in rows if r["label"] == c]))
             for c in classes}
    docs, labels = [], []
    for c in classes * per_class:
        others = list(rng.permutation([o for o in classes if o != c]))
        articles = [pools[k].pop() for k, n in zip([c, *others], MIX, strict=True)
                    for _ in range(n)]
        docs.append(" ".join(rng.permutation(articles)))
        labels.append(c)
    return docs, labels


def main() -> None:
    from fewshot.data import few_shot_indices
    from fewshot.encoders import TextEncoder
    from fewshot.heads import make_head

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--shots", type=int, default=8)
    ap.add_argument("--train-docs", type=int, default=80, help="train pool, all classes")
    ap.add_argument("--test-docs", type=int, default=160)
    ap.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/long_texts.jsonl")
    args = ap.parse_args()
    lo, _, hi = args.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    rng = np.random.default_rng(0)
    train, y_train = build_docs("train", args.train_docs // 4, rng)
    test, y_test = build_docs("test", args.test_docs // 4, rng)
    chosen = sorted({i for s in seeds for i in few_shot_indices(y_train, args.shots, s)})

    rows = []
    for mode in ("truncate", "chunk"):
        enc = TextEncoder("all-MiniLM-L6-v2", device="cpu", show_progress=False,
                          long_texts=mode).fit()
        enc.encode(test[:2])  # warm up
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            z_test = enc.encode(test)
            seconds = time.perf_counter() - start
        z_train = dict(zip(chosen, enc.encode([train[i] for i in chosen]), strict=True))
        accs = []
        for seed in seeds:
            idx = few_shot_indices(y_train, args.shots, seed)
            head = make_head("logreg").fit(np.stack([z_train[i] for i in idx]),
                                           [y_train[i] for i in idx])
            accs.append(float(np.mean(head.predict(z_test) == np.asarray(y_test))))
        windows = sum(len(w) for w in enc._windows(test).values())
        rows.append({
            "bench": "long_texts", "mode": mode, "shots": args.shots, "seeds": seeds,
            "n_test": len(test), "accuracy": accs, "mean": statistics.mean(accs),
            "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "encode_test_s": seconds, "windows": windows if mode == "chunk" else len(test),
            "warnings": [str(w.message) for w in caught], "cpus": os.cpu_count(),
            "load_avg": os.getloadavg()[0], "python": platform.python_version(),
        })

    tokens = [len(t) for t in enc.model_.tokenizer(test, add_special_tokens=False,
                                                   verbose=False)["input_ids"]]
    print(f"{len(test)} test documents, {statistics.mean(tokens):.0f} tokens on average "
          f"(min {min(tokens)}, max {max(tokens)}); {len(train)} train documents; "
          f"{args.shots} shots x seeds {seeds}")
    print("\n| long_texts | accuracy | sequences embedded | encode s (test) | docs/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['mode']} | {r['mean']:.3f} +- {r['sd']:.3f} | {r['windows']} | "
              f"{r['encode_test_s']:.1f} | {len(test) / r['encode_test_s']:.1f} |")
    with open(args.output, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
