"""Exported (ONNX fp32 / int8) models against the PyTorch path: throughput, accuracy, cold start.

Three steps, each runnable alone (timing steps belong under the shared bench lock):

    python benchmarks/export_speed.py prepare      # train frozen + tuned MiniLM, export both ways
    flock /tmp/fewshot-bench.lock python benchmarks/export_speed.py speed
    flock /tmp/fewshot-bench.lock python benchmarks/export_speed.py cold-start

``prepare``: for each dataset (ag_news, trec from ``--data``), 8 shots per class
(seed 0), a frozen all-MiniLM-L6-v2 + logreg model and a tuned one (``tune=True``,
the tuner's defaults, as ``fewshot train --tune``; ``--tune-steps N`` for fewer
steps), each exported fp32 and int8
(checked on the training items). ``speed``: in one process per dataset, the same
test texts (the first ``--limit`` of the test set, all by default) through the
PyTorch model, the fp32 and the int8 export (``predict_proba``, no cache, 2 threads
each, a warm-up batch first): texts/s, ratio to PyTorch, accuracy, and the share of
rows whose label equals the PyTorch model's. ``cold-start``: wall time of
``fewshot predict MODEL one-text.txt --no-cache`` from process start to exit, the
median of ``--repeats`` runs, for the PyTorch folder and both exports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASETS = ("ag_news", "trec")
KINDS = ("frozen", "tuned")


def read_jsonl(path: Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["text"] for r in rows], [str(r["label"]) for r in rows]


def prepare(args: argparse.Namespace) -> None:
    from fewshot import FewShotClassifier
    from fewshot.data.splits import few_shot_indices
    from fewshot.export import export_model

    for name in args.datasets:
        texts, labels = read_jsonl(args.data / name / "train.jsonl")
        idx = few_shot_indices(labels, args.shots, args.seed)
        x, y = [texts[i] for i in idx], [labels[i] for i in idx]
        for kind in KINDS:
            folder = args.work / name / kind
            if not (folder / "torch" / "fewshot.json").is_file():
                began = time.perf_counter()
                tune = ({"max_steps": args.tune_steps} if args.tune_steps else True)
                clf = FewShotClassifier("all-MiniLM-L6-v2", cache=False, device="cpu",
                                        tune=tune if kind == "tuned" else None,
                                        show_progress=False)
                clf.fit(x, y)
                clf.save(folder / "torch", overwrite=True)
                print(f"{name} {kind}: trained on {len(x)} texts in "
                      f"{time.perf_counter() - began:.0f}s", flush=True)
            for quantize in (None, "int8"):
                out = folder / (quantize or "fp32")
                if (out / "fewshot.json").is_file():
                    continue
                result = export_model(folder / "torch", out, quantize=quantize, check_items=x,
                                      check_source=f"{name} training shots", overwrite=True)
                print(f"{name} {kind} {quantize or 'fp32'}: {json.dumps(result.check)}",
                      flush=True)


def speed(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from fewshot import FewShotClassifier

    torch.set_num_threads(args.threads)
    results = []
    for name in args.datasets:
        texts, gold = read_jsonl(args.data / name / "test.jsonl")
        texts, gold = texts[: args.limit], gold[: args.limit]
        for kind in args.kinds:
            folder = args.work / name / kind
            ref_labels = None
            ref_rate = None
            for variant in ("torch", "fp32", "int8"):
                clf = FewShotClassifier.load(folder / variant, cache=False, device="cpu",
                                             show_progress=False)
                if variant != "torch":
                    clf.encoder_.set_params(threads=args.threads)
                clf.predict_proba(texts[:32])  # warm-up: sessions, kernels, allocators
                began = time.perf_counter()
                proba = clf.predict_proba(texts)
                took = time.perf_counter() - began
                labels = np.asarray(clf.classes_)[proba.argmax(axis=1)]
                rate = len(texts) / took
                if variant == "torch":
                    ref_labels, ref_rate = labels, rate
                row = {
                    "dataset": name, "model": kind, "variant": variant, "texts": len(texts),
                    "seconds": round(took, 2), "texts_per_s": round(rate, 2),
                    "ratio_to_torch": round(rate / ref_rate, 3),
                    "accuracy": round(float(np.mean(labels == np.asarray(gold))), 4),
                    "same_label_as_torch": round(float(np.mean(labels == ref_labels)), 5),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
    table(results, "texts_per_s", "ratio_to_torch", "accuracy", "same_label_as_torch")
    out = args.work / "speed.json"
    out.write_text(json.dumps(results, indent=1))


def cold_start(args: argparse.Namespace) -> None:
    one = args.work / "one-text.txt"
    one.write_text("Stocks rallied after the central bank held interest rates.\n")
    fewshot = Path(sys.executable).parent / "fewshot"
    results = []
    runs: list[tuple[str, list[str]]] = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("import fewshot.classifier", [sys.executable, "-c", "import fewshot.classifier"]),
    ]
    for variant in ("torch", "fp32", "int8"):
        model = args.work / args.datasets[0] / "frozen" / variant
        runs.append((f"fewshot predict ({variant})",
                     [str(fewshot), "predict", str(model), str(one), "-o",
                      str(args.work / f"cold-{variant}.jsonl"), "--force", "--no-cache"]))
    for label, cmd in runs:
        times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - began)
        row = {"run": label, "median_s": round(statistics.median(times), 3),
               "min_s": round(min(times), 3)}
        results.append(row)
        print(json.dumps(row), flush=True)
    (args.work / "cold_start.json").write_text(json.dumps(results, indent=1))


def table(rows: list[dict], *columns: str) -> None:
    head = ["dataset", "model", "variant", *columns]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in head) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare", "speed", "cold-start"])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fewshot-export-bench"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS,
                        help="speed: the models to time.")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None,
                        help="Texts per test set (the first ones); default all.")
    parser.add_argument("--tune-steps", type=int, default=None,
                        help="Tuning steps of the tuned model; default the tuner's (200).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    {"prepare": prepare, "speed": speed, "cold-start": cold_start}[args.step](args)


if __name__ == "__main__":
    main()
