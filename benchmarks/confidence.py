"""Confidence benchmarks: calibration, review, audit, label descriptions, self-training.

Every figure follows ../shared/bench/PROTOCOL.md: few-shot splits from
``few_shot_indices`` (seeds 0-4), the whole test split for scoring, nothing from
it used for fitting or calibration. Encoder: all-MiniLM-L6-v2, through the
embedding cache (``$FEWSHOT_CACHE``), so repeated runs only fit heads.

    python benchmarks/confidence.py all            # everything (a few minutes, warm cache)
    python benchmarks/confidence.py calibration    # ECE / Brier before and after, every head
    python benchmarks/confidence.py review         # precision at a 0.90 target, conformal sets
    python benchmarks/confidence.py review_prior   # the same with a class prior (label shift)
    python benchmarks/confidence.py evidence       # held-out rows a temperature test would need
    python benchmarks/confidence.py audit          # flipped labels found in the audit's top 10%
    python benchmarks/confidence.py priors         # label descriptions at 0, 1, 2, 8 shots
    python benchmarks/confidence.py selftrain      # 8 shots + the rest of train as unlabelled pool

Prints markdown tables and writes per-seed rows and summaries as JSON to
--output (default benchmarks/results/confidence.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FEWSHOT_SHARED", ROOT.parent / "shared"))
DESCRIPTIONS = ROOT / "benchmarks" / "label_descriptions"
DATASETS = ("sst5", "ag_news", "trec")


class Bench:
    """Encoder, cache and data shared by every part."""

    def __init__(self, seeds: list[int]) -> None:
        from fewshot.cache import EmbeddingCache
        from fewshot.encoders import get_encoder

        self.seeds = seeds
        self.cache = EmbeddingCache()
        self.encoder = get_encoder("all-MiniLM-L6-v2", "text", show_progress=False)
        self._data: dict[str, Any] = {}

    def data(self, name: str) -> tuple[Any, Any]:
        from fewshot.data import load_dataset

        if name not in self._data:
            folder = SHARED / "data" / name
            self._data[name] = (load_dataset(folder, "train"), load_dataset(folder, "test"))
        return self._data[name]

    def split(self, name: str, shots: int, seed: int) -> tuple[list[str], list[str]]:
        from fewshot.data import few_shot_indices

        train, _ = self.data(name)
        idx = few_shot_indices(train.labels, shots, seed)
        return [train.items[i] for i in idx], [train.labels[i] for i in idx]

    def pool(self, name: str, shots: int, seed: int) -> list[str]:
        """The rest of the train split: unlabelled items for priors and self-training."""
        from fewshot.data import few_shot_indices

        train, _ = self.data(name)
        chosen = set(few_shot_indices(train.labels, shots, seed))
        return [train.items[i] for i in range(len(train)) if i not in chosen]

    def classifier(self, head: str = "logreg", **params: Any) -> Any:
        from fewshot import FewShotClassifier

        return FewShotClassifier(self.encoder, head, cache=self.cache, **params)

    def embed(self, items: list[str]) -> np.ndarray:
        from fewshot.cache import embed

        return embed(self.encoder, items, self.cache)


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None and not np.isnan(v)]
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {sd:.3f}"


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return float(statistics.mean(values)) if values else float("nan")


def _ece_floor(proba: np.ndarray, n_draws: int = 20, seed: int = 0) -> float:
    """Expected ECE of a perfectly calibrated model with these probabilities, same n.

    Labels are drawn from ``proba`` itself, so any ECE left is sampling noise of the
    estimate on this many test items.
    """
    from fewshot.metrics import expected_calibration_error

    rng = np.random.default_rng(seed)
    cum = np.cumsum(proba.astype(np.float64), axis=1)
    out = []
    for _ in range(n_draws):
        u = rng.random((len(proba), 1)) * cum[:, -1:]
        y = np.minimum((u > cum).sum(axis=1), proba.shape[1] - 1)
        out.append(expected_calibration_error(proba, y))
    return float(np.mean(out))


# -- 1. calibration ---------------------------------------------------------------------------
def run_calibration(b: Bench) -> dict[str, Any]:
    from fewshot.metrics import brier_score, expected_calibration_error

    rows = []
    for name in DATASETS:
        _, test = b.data(name)
        for shots in (8, 64):
            for head in ("logreg", "centroid", "knn"):
                for seed in b.seeds:
                    X, y = b.split(name, shots, seed)
                    clf = b.classifier(head, calibration="temperature").fit(X, y)
                    index = {c: i for i, c in enumerate(clf.classes_.tolist())}
                    yt = np.asarray([index[v] for v in test.labels])
                    raw = clf.predict_proba(test.items, calibrated=False)
                    cal = clf.calibrate(raw)
                    row = {
                        "dataset": name, "shots": shots, "head": head, "seed": seed,
                        "accuracy": float((cal.argmax(1) == yt).mean()),
                        "ece_before": expected_calibration_error(raw, yt),
                        "ece_temperature": expected_calibration_error(cal, yt),
                        "brier_before": brier_score(raw, yt),
                        "brier_temperature": brier_score(cal, yt),
                        "ece_floor": _ece_floor(cal),
                        # identity: the likelihood-ratio test kept the head's own
                        "calibrator": clf.calibrator_.name,
                        "temperature": getattr(clf.calibrator_, "temperature", 1.0),
                    }
                    if shots == 64 and head == "logreg":
                        iso = b.classifier(head, calibration="isotonic").fit(X, y)
                        p_iso = iso.predict_proba(test.items)
                        row["ece_isotonic"] = expected_calibration_error(p_iso, yt)
                        row["brier_isotonic"] = brier_score(p_iso, yt)
                        row["isotonic_used"] = iso.calibration_info_["method"]
                    # Label-shift correction: the class mix of the whole train split, unlabelled
                    # (never the test split), estimated by EM when the model can tell. The
                    # labelled rows stay in: without them the pool is short of N per class.
                    clf.adapt_prior(b.data(name)[0].items)
                    shifted = clf.predict_proba(test.items)
                    row.update({
                        "prior_used": clf.label_shift_["used"],
                        "prior_sigma_min": clf.label_shift_["sigma_min"],
                        "accuracy_prior": float((shifted.argmax(1) == yt).mean()),
                        "ece_prior": expected_calibration_error(shifted, yt),
                        "brier_prior": brier_score(shifted, yt),
                    })
                    rows.append(row)
            print(f"calibration {name} {shots}-shot done", file=sys.stderr)
    lines = [
        "| dataset | shots | head | accuracy | ECE before | ECE after (temperature) "
        "| ECE floor | Brier before | Brier after | seeds left as they were |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    summary = []
    for name in DATASETS:
        for shots in (8, 64):
            for head in ("logreg", "centroid", "knn"):
                key = (name, shots, head)
                rs = [r for r in rows if (r["dataset"], r["shots"], r["head"]) == key]
                s = {k: _mean([r[k] for r in rs]) for k in (
                    "accuracy", "ece_before", "ece_temperature", "ece_floor", "brier_before",
                    "brier_temperature")}
                if head == "logreg" and shots == 64:
                    s["ece_isotonic"] = _mean([r["ece_isotonic"] for r in rs])
                summary.append({"dataset": name, "shots": shots, "head": head, **s})
                lines.append(
                    f"| {name} | {shots} | {head} | {_mean_sd([r['accuracy'] for r in rs])} "
                    f"| {_mean_sd([r['ece_before'] for r in rs])} "
                    f"| {_mean_sd([r['ece_temperature'] for r in rs])} "
                    f"| {s['ece_floor']:.3f} "
                    f"| {_mean_sd([r['brier_before'] for r in rs])} "
                    f"| {_mean_sd([r['brier_temperature'] for r in rs])} "
                    f"| {sum(r['calibrator'] == 'identity' for r in rs)} of {len(rs)} |"
                )
    iso_lines = [
        "| dataset | ECE temperature | ECE isotonic | Brier temperature | Brier isotonic |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in DATASETS:
        rs = [r for r in rows if r["dataset"] == name and r["shots"] == 64
              and r["head"] == "logreg"]
        iso_lines.append(
            f"| {name} | {_mean_sd([r['ece_temperature'] for r in rs])} "
            f"| {_mean_sd([r['ece_isotonic'] for r in rs])} "
            f"| {_mean_sd([r['brier_temperature'] for r in rs])} "
            f"| {_mean_sd([r['brier_isotonic'] for r in rs])} |"
        )
    prior_lines = [
        "| dataset | shots | head | prior used (seeds) | accuracy | accuracy + prior "
        "| ECE temperature | ECE temperature + prior | Brier + prior |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for item in summary:
        key = (item["dataset"], item["shots"], item["head"])
        rs = [r for r in rows if (r["dataset"], r["shots"], r["head"]) == key]
        item["ece_prior"] = _mean([r["ece_prior"] for r in rs])
        item["accuracy_prior"] = _mean([r["accuracy_prior"] for r in rs])
        prior_lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {sum(r['prior_used'] for r in rs)} of {len(rs)} "
            f"| {_mean_sd([r['accuracy'] for r in rs])} "
            f"| {_mean_sd([r['accuracy_prior'] for r in rs])} "
            f"| {_mean_sd([r['ece_temperature'] for r in rs])} "
            f"| {_mean_sd([r['ece_prior'] for r in rs])} "
            f"| {_mean_sd([r['brier_prior'] for r in rs])} |"
        )
    return {"rows": rows, "summary": summary,
            "markdown": "\n".join(lines) + "\n\nlogreg, 64 shots: temperature vs isotonic\n\n"
            + "\n".join(iso_lines)
            + "\n\nclass prior from the whole train split, unlabelled (adapt_prior)\n\n"
            + "\n".join(prior_lines)}


# -- 2. review --------------------------------------------------------------------------------
def run_review(b: Bench, targets: tuple[float, ...] = (0.9, 0.95)) -> dict[str, Any]:
    from fewshot.confidence.thresholds import review

    rows = []
    for name in DATASETS:
        _, test = b.data(name)
        for shots in (8, 64):
            for seed in b.seeds:
                X, y = b.split(name, shots, seed)
                clf = b.classifier("logreg", calibration="temperature").fit(X, y)
                index = {c: i for i, c in enumerate(clf.classes_.tolist())}
                yt = np.asarray([index[v] for v in test.labels])
                proba = clf.predict_proba(test.items)
                for target in targets:
                    r = review(clf, proba, target_precision=target, conformal=0.9)
                    correct = r.predicted == yt
                    acc = r.accepted
                    sets = r.conformal.sets
                    rows.append({
                        "dataset": name, "shots": shots, "seed": seed, "target": target,
                        "threshold": r.threshold.threshold,
                        "estimated_precision": r.threshold.precision,
                        "precision_lower": r.threshold.precision_lower,
                        "n_held_out_accepted": r.threshold.n_accepted,
                        "expected_coverage": r.threshold.coverage,
                        "precision": float(correct[acc].mean()) if acc.any() else float("nan"),
                        "coverage": float(acc.mean()),
                        "accuracy": float(correct.mean()),
                        "conformal_coverage": float(sets[np.arange(len(yt)), yt].mean()),
                        "set_size": float(sets.sum(axis=1).mean()),
                    })
        print(f"review {name} done", file=sys.stderr)
    lines = [
        "| dataset | shots | target | test precision of accepted | min over seeds "
        "| coverage (test) | expected coverage (CV) | conformal 0.90: coverage | set size |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    summary = []
    for name in DATASETS:
        for shots in (8, 64):
            for target in targets:
                rs = [r for r in rows
                      if (r["dataset"], r["shots"], r["target"]) == (name, shots, target)]
                prec = [r["precision"] for r in rs]
                valid = [p for p in prec if not np.isnan(p)]
                s = {"dataset": name, "shots": shots, "target": target,
                     "precision": _mean(prec), "precision_min": min(valid) if valid else None,
                     "seeds_accepting": len(valid),
                     "coverage": _mean([r["coverage"] for r in rs]),
                     "conformal_coverage": _mean([r["conformal_coverage"] for r in rs]),
                     "set_size": _mean([r["set_size"] for r in rs])}
                summary.append(s)
                note = (
                    "" if len(valid) == len(rs)
                    else f" ({len(valid)} of {len(rs)} seeds accept any)"
                )
                lines.append(
                    f"| {name} | {shots} | {target:.2f} | {_mean_sd(prec)}{note} "
                    f"| {'n/a' if not valid else f'{min(valid):.3f}'} "
                    f"| {_mean_sd([r['coverage'] for r in rs])} "
                    f"| {_mean_sd([r['expected_coverage'] for r in rs])} "
                    f"| {_mean_sd([r['conformal_coverage'] for r in rs])} "
                    f"| {s['set_size']:.2f} |"
                )
    bound_lines = [
        "| dataset | shots | target | held-out rows behind the threshold (mean; range) "
        "| estimated precision (mean) | 95% lower bound (mean; range) "
        "| test precision >= bound (seeds) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in DATASETS:
        for shots in (8, 64):
            for target in targets:
                key = (name, shots, target)
                rs = [r for r in rows if (r["dataset"], r["shots"], r["target"]) == key
                      and not np.isnan(r["precision"])]
                if not rs:
                    continue
                held = sum(r["precision"] >= r["precision_lower"] for r in rs)
                bound_lines.append(
                    f"| {name} | {shots} | {target:.2f} "
                    f"| {_mean([r['n_held_out_accepted'] for r in rs]):.0f}; "
                    f"{_range(rs, 'n_held_out_accepted', 0)} "
                    f"| {_mean([r['estimated_precision'] for r in rs]):.3f} "
                    f"| {_mean([r['precision_lower'] for r in rs]):.3f}; "
                    f"{_range(rs, 'precision_lower', 3)} | {held} of {len(rs)} |"
                )
    return {"rows": rows, "summary": summary, "markdown": "\n".join(lines)
            + "\n\nhow firm the estimate is (seeds that accept anything)\n\n"
            + "\n".join(bound_lines)}


# -- 3. audit ---------------------------------------------------------------------------------
def flip_labels(labels: list[str], fraction: float, seed: int) -> tuple[list[str], np.ndarray]:
    """Labels with ``round(fraction * n)`` rows (seeded) moved to another random class."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    n_flip = round(fraction * len(labels))
    rows = np.sort(rng.choice(len(labels), n_flip, replace=False))
    out = list(labels)
    for i in rows:
        out[i] = str(rng.choice([c for c in classes if c != labels[i]]))
    return out, rows


def run_audit(b: Bench) -> dict[str, Any]:
    from fewshot.confidence.audit import audit_labels

    rows = []
    for name in ("ag_news", "trec", "sst5"):
        for seed in b.seeds:
            X, y = b.split(name, 64, seed)
            noisy, flipped = flip_labels(y, 0.10, seed)
            classes = sorted(set(y))
            y_idx = np.asarray([classes.index(v) for v in noisy])
            Z = b.embed(X)
            result = audit_labels(Z, y_idx, len(classes))
            m = len(flipped)
            is_flipped = np.zeros(len(y), bool)
            is_flipped[flipped] = True

            def share(score: np.ndarray, m: int = m, is_flipped: np.ndarray = is_flipped) -> float:
                return float(is_flipped[np.argsort(-score, kind="stable")[:m]].mean())

            rows.append({
                "dataset": name, "seed": seed, "n": len(y), "flipped": m,
                "top10_flipped_share": share(result.suspicion),
                "probability_only": share(1 - np.nan_to_num(result.label_proba, nan=0.5)),
                "knn_only": share(1 - result.knn_agreement),
                "duplicate_groups": len(result.duplicate_groups),
                "conflicting_groups": len(result.conflicting_groups(y_idx)),
                "outliers": int(result.outlier.sum()),
            })
        print(f"audit {name} done", file=sys.stderr)
    lines = [
        "| dataset | labelled | flipped | flipped share of top 10% | min over seeds "
        "| p(label) alone | kNN alone |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    summary = []
    for name in ("ag_news", "trec", "sst5"):
        rs = [r for r in rows if r["dataset"] == name]
        share = [r["top10_flipped_share"] for r in rs]
        summary.append({"dataset": name, "share": _mean(share), "share_min": min(share)})
        lines.append(
            f"| {name} | {rs[0]['n']} | {rs[0]['flipped']} | {_mean_sd(share)} | {min(share):.3f} "
            f"| {_mean_sd([r['probability_only'] for r in rs])} "
            f"| {_mean_sd([r['knn_only'] for r in rs])} |"
        )
    return {"rows": rows, "summary": summary, "markdown": "\n".join(lines)}


# -- 4. label descriptions --------------------------------------------------------------------
def run_priors(b: Bench) -> dict[str, Any]:
    rows = []
    for name in DATASETS:
        _, test = b.data(name)
        descriptions = json.loads((DESCRIPTIONS / f"{name}.json").read_text())
        yt = np.asarray(test.labels)
        zero = b.classifier(label_descriptions=descriptions).fit([], [])
        rows.append({"dataset": name, "shots": 0, "seed": None, "with": True,
                     "accuracy": float((zero.predict(test.items) == yt).mean())})
        for shots in (1, 2, 8):
            for seed in b.seeds:
                X, y = b.split(name, shots, seed)
                for with_desc in (False, True):
                    clf = b.classifier(label_descriptions=descriptions if with_desc else None)
                    clf.fit(X, y)
                    rows.append({"dataset": name, "shots": shots, "seed": seed, "with": with_desc,
                                 "accuracy": float((clf.predict(test.items) == yt).mean())})
        print(f"priors {name} done", file=sys.stderr)
    lines = [
        "| dataset | chance | 0-shot, descriptions | 1-shot without / with | 2-shot without / with "
        "| 8-shot without / with |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    summary = []
    for name in DATASETS:
        train, _ = b.data(name)
        chance = 1 / len(set(train.labels))
        rs = [r for r in rows if r["dataset"] == name]
        zero = next(r["accuracy"] for r in rs if r["shots"] == 0)
        cells, s = [], {"dataset": name, "chance": chance, "zero_shot": zero}
        for shots in (1, 2, 8):
            off = [r["accuracy"] for r in rs if r["shots"] == shots and not r["with"]]
            on = [r["accuracy"] for r in rs if r["shots"] == shots and r["with"]]
            s[f"{shots}_without"], s[f"{shots}_with"] = _mean(off), _mean(on)
            cells.append(f"{_mean_sd(off)} / {_mean_sd(on)}")
        summary.append(s)
        lines.append(f"| {name} | {chance:.3f} | {zero:.3f} | " + " | ".join(cells) + " |")
    return {"rows": rows, "summary": summary, "markdown": "\n".join(lines)}


# -- 5. self-training -------------------------------------------------------------------------
def run_selftrain(b: Bench, shots: int = 8) -> dict[str, Any]:
    from fewshot.data import few_shot_indices

    rows = []
    for name in DATASETS:
        train, test = b.data(name)
        yt = np.asarray(test.labels)
        b.embed(train.items)  # the whole pool once, through the cache
        for seed in b.seeds:
            idx = few_shot_indices(train.labels, shots, seed)
            X, y = [train.items[i] for i in idx], [train.labels[i] for i in idx]
            pool = b.pool(name, shots, seed)
            base = b.classifier(calibration="temperature").fit(X, y)
            start = time.perf_counter()
            st = b.classifier(calibration="temperature").fit(X, y, unlabelled=pool)
            seconds = time.perf_counter() - start
            report = st.self_training_
            rows.append({
                "dataset": name, "seed": seed, "pool": len(pool),
                "accuracy_without": float((base.predict(test.items) == yt).mean()),
                "accuracy_with": float((st.predict(test.items) == yt).mean()),
                "rounds": len(report["rounds"]), "added": report["added"],
                "added_per_round": [r["added"] for r in report["rounds"]],
                "fit_seconds": seconds,
            })
        print(f"selftrain {name} done", file=sys.stderr)
    lines = [
        "| dataset | pool | 8-shot | 8-shot + self-training | gain | rounds (mean) "
        "| pseudo-labels added (mean) | fit s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    gains = []
    summary = []
    for name in DATASETS:
        rs = [r for r in rows if r["dataset"] == name]
        gain = [r["accuracy_with"] - r["accuracy_without"] for r in rs]
        gains.append(_mean(gain))
        summary.append({"dataset": name, "without": _mean([r["accuracy_without"] for r in rs]),
                        "with": _mean([r["accuracy_with"] for r in rs]), "gain": _mean(gain)})
        lines.append(
            f"| {name} | {rs[0]['pool']} | {_mean_sd([r['accuracy_without'] for r in rs])} "
            f"| {_mean_sd([r['accuracy_with'] for r in rs])} | {_mean(gain):+.3f} "
            f"| {_mean([r['rounds'] for r in rs]):.1f} | {_mean([r['added'] for r in rs]):.0f} "
            f"| {_mean([r['fit_seconds'] for r in rs]):.1f} |"
        )
    lines.append(f"| mean gain | | | | {statistics.mean(gains):+.3f} | | | |")
    return {"rows": rows, "summary": summary, "mean_gain": statistics.mean(gains),
            "markdown": "\n".join(lines)}


def run_review_prior(b: Bench, shots: int = 64, target: float = 0.9) -> dict[str, Any]:
    """Review at a 0.90 target with and without a class prior from the train split."""
    from fewshot.confidence.thresholds import review

    rows = []
    for name in ("ag_news", "trec"):
        train, test = b.data(name)
        yt = np.asarray(test.labels)
        for seed in b.seeds:
            X, y = b.split(name, shots, seed)
            clf = b.classifier("logreg", calibration="temperature").fit(X, y)
            for prior in (False, True):
                if prior:
                    clf.adapt_prior(train.items)
                r = review(clf, clf.predict_proba(test.items), target_precision=target)
                acc = r.accepted
                rows.append({
                    "dataset": name, "seed": seed, "prior": prior,
                    "prior_used": bool(prior and clf.class_prior_ is not None),
                    "estimated_precision": r.threshold.precision,
                    "precision": float((clf.classes_[r.predicted[acc]] == yt[acc]).mean()),
                    "expected_coverage": r.threshold.coverage, "coverage": float(acc.mean()),
                })
        print(f"review_prior {name} done", file=sys.stderr)
    lines = [
        "| dataset | class prior | precision (lowest seed) | coverage | expected coverage |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name in ("ag_news", "trec"):
        for prior in (False, True):
            rs = [r for r in rows if r["dataset"] == name and r["prior"] == prior]
            lines.append(
                f"| {name} | {'from the train split' if prior else 'none'} "
                f"| {_mean_sd([r['precision'] for r in rs])} "
                f"({min(r['precision'] for r in rs):.3f}) "
                f"| {_mean_sd([r['coverage'] for r in rs])} "
                f"| {_mean_sd([r['expected_coverage'] for r in rs])} |"
            )
    return {"rows": rows, "markdown": "\n".join(lines)}


def run_evidence(b: Bench, shots: tuple[int, ...] = (8, 64)) -> dict[str, Any]:
    """How many held-out rows a test would need to see what the test set shows.

    Diagnostic only: ``beta_test`` is the inverse temperature that fits the test
    split (the protocol never lets a model use it). ``gain`` is the mean log-loss it
    saves per row over the head's own probabilities, so ``n`` held-out rows give a
    likelihood-ratio statistic of about ``2 n gain`` (plus chi-squared noise), and
    80% power at p < 0.05 (1 degree of freedom) needs ``(1.96 + 0.84)^2 / (2 gain)``
    rows. ``held_out`` is what the labelled split offers; ``evidence`` is the
    statistic calibration actually measured on it.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import softmax

    from fewshot.confidence.calibration import TemperatureScaling, _log_loss
    from fewshot.metrics import expected_calibration_error

    rows = []
    for name in DATASETS:
        _, test = b.data(name)
        for n_shots in shots:
            for seed in b.seeds:
                X, y = b.split(name, n_shots, seed)
                clf = b.classifier("logreg", calibration="temperature").fit(X, y)
                index = {c: i for i, c in enumerate(clf.classes_.tolist())}
                yt = np.asarray([index[v] for v in test.labels])
                z = np.log(clf.predict_proba(test.items, calibrated=False).astype(np.float64))
                fit = minimize_scalar(
                    lambda lb, z=z, yt=yt: _log_loss(np.exp(lb) * z, yt),
                    bounds=(np.log(0.01), np.log(100.0)), method="bounded",
                )
                gain = _log_loss(z, yt) - float(fit.fun)
                # the held-out rows calibration was fitted on, refitted to read off 1/T
                ts = TemperatureScaling(fit_smoothing=False).fit(
                    clf.oof_proba_, clf.oof_labels_)
                beta = float(np.exp(fit.x))
                rows.append({
                    "dataset": name, "shots": n_shots, "seed": seed,
                    "beta_test": beta, "gain": gain,
                    "rows_needed": (1.96 + 0.84) ** 2 / (2 * gain) if gain > 0 else None,
                    "held_out": len(clf.oof_labels_), "beta_oof": 1.0 / ts.temperature,
                    "evidence": ts.evidence_, "calibrator": clf.calibrator_.name,
                    "mean_confidence": float(np.exp(z).max(axis=1).mean()),
                    "accuracy": float((z.argmax(axis=1) == yt).mean()),
                    "ece_test_beta": expected_calibration_error(softmax(beta * z, axis=1), yt),
                })
        print(f"evidence {name} done", file=sys.stderr)
    lines = [
        "| dataset | shots | 1/T on test (diagnostic) | 1/T out-of-fold | log-loss gain per row "
        "| rows needed (median) | held-out rows | likelihood ratio (needs 3.84) |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name in DATASETS:
        for n_shots in shots:
            rs = [r for r in rows if r["dataset"] == name and r["shots"] == n_shots]
            needed = [r["rows_needed"] if r["rows_needed"] is not None else float("inf")
                      for r in rs]
            lines.append(
                f"| {name} | {n_shots} | {_join(rs, 'beta_test')} | {_join(rs, 'beta_oof')} "
                f"| {_mean([r['gain'] for r in rs]):.4f} "
                f"| {statistics.median(needed):.0f} | {rs[0]['held_out']} "
                f"| {_join(rs, 'evidence', 1)} |"
            )
    return {"rows": rows, "markdown": "\n".join(lines)}


def _range(rows: list[dict[str, Any]], key: str, digits: int) -> str:
    """``lo-hi`` of a value over seeds."""
    values = [r[key] for r in rows]
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def _join(rows: list[dict[str, Any]], key: str, digits: int = 2) -> str:
    """One value per seed, space-separated."""
    return " ".join(f"{r[key]:.{digits}f}" for r in rows)


def _finite(value: Any) -> Any:
    """NaN and infinity as null, so the file is strict JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


PARTS = {
    "calibration": run_calibration,
    "review": run_review,
    "review_prior": run_review_prior,
    "evidence": run_evidence,
    "audit": run_audit,
    "priors": run_priors,
    "selftrain": run_selftrain,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=[*PARTS, "all"])
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/confidence.json")
    args = parser.parse_args()
    import fewshot
    from fewshot.bench import parse_int_list

    bench = Bench(parse_int_list(args.seeds))
    parts = list(PARTS) if args.part == "all" else [args.part]
    results: dict[str, Any] = {}
    if args.output.is_file():
        results = json.loads(args.output.read_text())  # keep other parts' results
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
        "fewshot": fewshot.__version__, "encoder": bench.encoder.name,
        "seeds": bench.seeds, "cpu_count": os.cpu_count(),
    }
    for part in parts:
        start = time.perf_counter()
        out = PARTS[part](bench)
        out["seconds"] = round(time.perf_counter() - start, 1)
        results[part] = out
        print(f"\n### {part} ({out['seconds']} s)\n\n{out['markdown']}\n", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(_finite(results), indent=1, allow_nan=False) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
