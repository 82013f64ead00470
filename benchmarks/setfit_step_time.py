"""The setfit library's step time on a multi-label protocol split, and its full fit projected
from it: run under the bench lock when a full setfit fit does not fit the time available.

    flock /tmp/fewshot-bench.lock python benchmarks/setfit_step_time.py --shots 8 --seed 0

Same settings as the bench's ``setfit-lib`` (batch 16, 20 iterations, 1 epoch, body
learning rate 2e-5, one-vs-rest logistic regression), but training stops after
``--steps`` optimizer steps. Prints one JSON line: the split's rows, setfit's pair
count and steps for a full fit, the measured seconds per step (wall and CPU, after
the first ``--warmup`` steps), the time to build the pairs, and the projected fit.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--shots", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()

    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from setfit.sampler import ContrastiveDataset
    from transformers import TrainerCallback

    from fewshot import few_shot_indices, load_dataset
    from fewshot.encoders import get_encoder

    train = load_dataset(Path(args.shared) / "data" / "go_emotions", "train")
    idx = few_shot_indices(train.labels, args.shots, args.seed)
    texts = [train.items[i] for i in idx]
    names = sorted({c for i in idx for c in train.labels[i]})
    vectors = [[int(c in train.labels[i]) for c in names] for i in idx]
    n_pairs = 2 * 20 * len(texts)  # setfit: num_iterations * rows, positives and negatives
    full_steps = math.ceil(n_pairs / 16)

    start = time.perf_counter()
    ContrastiveDataset(texts, vectors, True, 20)  # what Trainer.train builds first
    pair_seconds = time.perf_counter() - start

    stamps: list[tuple[float, float]] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *a, **k):  # noqa: ANN002, ANN003, ANN202
            stamps.append((time.perf_counter(), time.process_time()))

    enc = get_encoder("all-MiniLM-L6-v2", "text", device="cpu")
    enc.fit()
    body = enc.resolved_.location if getattr(enc, "resolved_", None) else enc.name
    model = SetFitModel.from_pretrained(body, device="cpu",
                                        multi_target_strategy="one-vs-rest")
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, batch_size=16, num_iterations=20, num_epochs=1,
            body_learning_rate=2e-5, seed=args.seed, report_to="none",
            show_progress_bar=False, save_strategy="no", max_steps=args.steps,
        )
        data = Dataset.from_dict({"text": texts, "label": vectors})
        Trainer(model=model, args=targs, train_dataset=data, callbacks=[Clock()]).train()
    w = args.warmup
    steps = len(stamps) - 1 - w
    wall = (stamps[-1][0] - stamps[w][0]) / steps
    cpu = (stamps[-1][1] - stamps[w][1]) / steps
    print(json.dumps({
        "shots": args.shots, "seed": args.seed, "rows": len(texts), "labels": len(names),
        "pairs": n_pairs, "full_steps": full_steps, "measured_steps": steps,
        "wall_s_per_step": round(wall, 3), "cpu_s_per_step": round(cpu, 3),
        "pair_build_s": round(pair_seconds, 2),
        "projected_fit_wall_s": round(pair_seconds + full_steps * wall, 1),
        "projected_fit_cpu_s": round(full_steps * cpu, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
