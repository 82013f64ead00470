"""Distillation benchmark: a tuned MiniLM teacher -> a static-embedding student.

python benchmarks/distill.py [--dataset ag_news] [--pool 5000] [--seeds 0,1,2]

The student is built offline from the teacher's own files: MiniLM's tokenizer and
input token-embedding table as a sentence-transformers StaticEmbedding (mean of
token vectors; no attention), so it is ~50-100x faster to encode. Per seed:
teacher = tuned-logreg on the protocol's 8-shot split; student frozen = the
static model + logreg on the same 8 shots; student distilled = `fewshot.tuning.
distill` on `--pool` unlabelled training texts (labels unused). Writes
benchmarks/results/distill.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def static_student(folder: Path) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    from fewshot.encoders.resolve import resolve_text_model

    if (folder / "modules.json").is_file():
        return folder
    st = SentenceTransformer(resolve_text_model("all-MiniLM-L6-v2").location, device="cpu")
    tok = st.tokenizer.backend_tokenizer
    weights = st[0].auto_model.embeddings.word_embeddings.weight.detach().numpy()
    model = SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=weights)])
    model.save(str(folder))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ag_news")
    ap.add_argument("--pool", type=int, default=5000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    args = ap.parse_args()
    from fewshot import FewShotClassifier, few_shot_indices, load_dataset
    from fewshot.distillation import distill
    from fewshot.encoders import TextEncoder

    data = Path(args.shared) / "data" / args.dataset
    train, test = load_dataset(data, "train"), load_dataset(data, "test")
    student_dir = static_student(Path("/tmp/fewshot-static-minilm"))
    rng = np.random.default_rng(0)
    pool = [train.items[i] for i in rng.choice(len(train), args.pool, replace=False)]
    y_test = np.asarray(test.labels)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        idx = few_shot_indices(train.labels, 8, seed)
        X, y = [train.items[i] for i in idx], [train.labels[i] for i in idx]
        teacher = FewShotClassifier(TextEncoder("all-MiniLM-L6-v2", device="cpu"), tune=True,
                                    cache=False, show_progress=False).fit(X, y)
        student_enc = TextEncoder(str(student_dir), device="cpu", show_progress=False)
        frozen = FewShotClassifier(student_enc, cache=False).fit(X, y)
        start = time.perf_counter()
        student = distill(teacher, pool, student_enc, seed=seed, cache=False)
        distill_s = time.perf_counter() - start
        timings = {}
        for name, clf in (("teacher", teacher), ("student", student)):
            t0 = time.perf_counter()
            pred = clf.predict(test.items)
            timings[name] = time.perf_counter() - t0
            rows.append({"seed": seed, "model": name, "accuracy": float(np.mean(pred == y_test)),
                         "predict_seconds": timings[name]})
        rows.append({"seed": seed, "model": "student-frozen-8shot",
                     "accuracy": float(np.mean(frozen.predict(test.items) == y_test))})
        rows.append({"seed": seed, "model": "distill", "seconds": distill_s,
                     **student.distillation_})
        print(json.dumps(rows[-4:]), flush=True)
    out = ROOT / "benchmarks/results/distill.json"
    out.write_text(json.dumps({"dataset": args.dataset, "pool": args.pool, "rows": rows},
                              indent=1) + "\n")
    print(f"\n| model ({args.dataset}, 8 shots, seeds {args.seeds}) | accuracy | "
          f"predict s ({len(test)} texts, CPU) |")
    print("| --- | ---: | ---: |")
    for m in ("teacher", "student-frozen-8shot", "student"):
        acc = [r["accuracy"] for r in rows if r["model"] == m]
        sec = [r["predict_seconds"] for r in rows if r["model"] == m and "predict_seconds" in r]
        spread = f" +- {np.std(acc, ddof=1):.3f}" if len(acc) > 1 else ""
        print(f"| {m} | {np.mean(acc):.3f}{spread} | "
              f"{f'{np.mean(sec):.2f}' if sec else '-'} |")


if __name__ == "__main__":
    main()
