"""summary.md and PNG plots from a results.jsonl."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from fewshot._io import atomic_file
from fewshot.bench.runner import MULTI_LABEL_METRICS, primary_metric

__all__ = ["aggregate", "plot", "write_summary"]


def _latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row per (dataset, shots, seed, method, encoder): resumed runs win."""
    last: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        last[(r["dataset"], r["n_shot"], r["seed"], r["method"], r["encoder"])] = r
    return list(last.values())


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std over seeds per dataset x encoder x method x shots."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in _latest(rows):
        groups[(r["dataset"], r["encoder"], r["method"], r["n_shot"])].append(r)
    out = []
    for (dataset, encoder, method, n_shot), rs in sorted(groups.items()):
        multi = any(r.get("multi_label") for r in rs)
        metric = primary_metric(dataset, multi)
        ok = [r for r in rs if not r.get("error")]
        vals = [r[metric] for r in ok]
        fits = [r["fit_seconds"] for r in ok]
        predicts = [r["predict_seconds"] for r in ok if r.get("predict_seconds") is not None]
        f1s = [r["macro_f1"] for r in ok]
        out.append({
            "dataset": dataset, "encoder": encoder, "method": method, "n_shot": n_shot,
            "metric": metric, "n_seeds": len(vals), "n_failed": len(rs) - len(ok),
            # Seeds resumed under a changed encoder setting (same name, new id) would
            # be averaged with the old ones: counted here and flagged in the summary.
            # (rows that record no id are not counted as another setting)
            "n_encoder_ids": len({r["encoder_id"] for r in ok if r.get("encoder_id")}),
            # The same for method settings (a changed head or tuner default).
            "n_method_configs": len({r["method_config"] for r in ok
                                     if r.get("method_config")}),
            "mean": statistics.fmean(vals) if vals else None,
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0 if vals else None,
            "fit_seconds": statistics.fmean(fits) if fits else None,
            "predict_seconds": statistics.fmean(predicts) if predicts else None,
            "macro_f1": statistics.fmean(f1s) if f1s else None,
            "macro_f1_std": statistics.stdev(f1s) if len(f1s) > 1 else 0.0 if f1s else None,
            "multi_label": multi,
        })
        if multi:  # the other multi-label scores, as means over seeds
            out[-1].update({k: statistics.fmean(r[k] for r in ok) if ok else None
                            for k in MULTI_LABEL_METRICS[1:]})
    return out


def write_summary(rows: list[dict[str, Any]], path: Path) -> str:
    """Markdown tables, one per dataset: methods as rows, shots as columns."""
    agg = aggregate(rows)
    lines = [
        "# fewshot bench summary",
        "",
        "Mean +- sample std over seeds (protocol v1). Metric: MCC for "
        "amazon_counterfactual_en, accuracy elsewhere; macro-F1 beside it. `fit s` and "
        "`predict s` are mean wall times in seconds of the fit and of predicting the test "
        "set (frozen-embedding methods: the head alone; embedding the data is shared by "
        "them and recorded once per run as `encode_seconds` in results.jsonl). A cell "
        "marked `mixes N encoder ids` (or `method settings`) averages seeds run with "
        "different encoder (or head and tuner) settings under one name: re-run it into a "
        "fresh output folder. Multi-label datasets: macro-F1 over labels (the headline), "
        "micro-F1, samples-F1, subset accuracy and Hamming loss (means over seeds).",
        "",
    ]
    by_ds: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for a in agg:
        by_ds[(a["dataset"], a["encoder"])].append(a)
    for (dataset, encoder), items in by_ds.items():
        shots = sorted({a["n_shot"] for a in items})
        methods = list(dict.fromkeys(a["method"] for a in items))
        cell = {(a["method"], a["n_shot"]): a for a in items}
        lines += [f"## {dataset} ({items[0]['metric']}, encoder {encoder})", ""]
        if items[0]["multi_label"]:
            lines += _multi_label_table(methods, shots, cell)
            continue
        lines.append("| method | " + " | ".join(
            f"{n}-shot | macro-F1 | fit s | predict s" for n in shots) + " |")
        lines.append("| --- |" + " ---: | ---: | ---: | ---: |" * len(shots))
        for m in methods:
            cells = []
            for n in shots:
                e = cell.get((m, n))
                if e is None or e["mean"] is None:
                    failed = f"failed x{e['n_failed']}" if e else ""
                    cells += [failed or "-", "-", "-", "-"]
                    continue
                note = f" ({e['n_seeds']} seeds)" if e["n_failed"] else ""
                if e["n_encoder_ids"] > 1:
                    note += f" (mixes {e['n_encoder_ids']} encoder ids)"
                if e["n_method_configs"] > 1:
                    note += f" (mixes {e['n_method_configs']} method settings)"
                predict = "-" if e["predict_seconds"] is None else f"{e['predict_seconds']:.2f}"
                cells += [f"{e['mean']:.3f} +- {e['std']:.3f}{note}",
                          f"{e['macro_f1']:.3f} +- {e['macro_f1_std']:.3f}",
                          f"{e['fit_seconds']:.2f}", predict]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    with atomic_file(path, "w") as f:
        f.write(text)
    return text


def _notes(e: dict[str, Any]) -> str:
    note = f" ({e['n_seeds']} seeds)" if e["n_failed"] else ""
    if e["n_encoder_ids"] > 1:
        note += f" (mixes {e['n_encoder_ids']} encoder ids)"
    if e["n_method_configs"] > 1:
        note += f" (mixes {e['n_method_configs']} method settings)"
    return note


def _multi_label_table(methods: list[str], shots: list[int],
                       cell: dict[tuple[str, int], dict[str, Any]]) -> list[str]:
    """Methods as rows; per shot count: macro-F1 +- std, the other scores, times."""
    head = ("macro-F1", "micro-F1", "samples-F1", "subset acc", "Hamming", "fit s",
            "predict s")
    lines = ["| method | " + " | ".join(f"{n}-shot {h}" if h == "macro-F1" else h
                                      for n in shots for h in head) + " |",
             "| --- |" + " ---: |" * len(head) * len(shots)]
    for m in methods:
        cells: list[str] = []
        for n in shots:
            e = cell.get((m, n))
            if e is None or e["mean"] is None:
                cells += [f"failed x{e['n_failed']}" if e else "-"] + ["-"] * (len(head) - 1)
                continue
            predict = "-" if e["predict_seconds"] is None else f"{e['predict_seconds']:.2f}"
            cells += [f"{e['mean']:.3f} +- {e['std']:.3f}{_notes(e)}",
                      *(f"{e[k]:.3f}" for k in MULTI_LABEL_METRICS[1:]),
                      f"{e['fit_seconds']:.2f}", predict]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def plot(rows: list[dict[str, Any]], output: Path) -> list[Path]:
    """``accuracy_vs_shots.png`` and ``fit_time_vs_accuracy.png`` in ``output``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("plots need matplotlib: pip install 'fewshot[plots]'") from e
    agg = [a for a in aggregate(rows) if a["mean"] is not None]
    if not agg:
        return []
    datasets = list(dict.fromkeys(a["dataset"] for a in agg))
    cols = min(3, len(datasets))
    nrows = (len(datasets) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.4 * nrows), squeeze=False)
    for ax, dataset in zip(axes.flat, datasets, strict=False):
        items = [a for a in agg if a["dataset"] == dataset]
        for method in dict.fromkeys(a["method"] for a in items):
            pts = sorted((a["n_shot"], a["mean"], a["std"]) for a in items if a["method"] == method)
            xs, ys, es = zip(*pts, strict=True)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({a["n_shot"] for a in items}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_title(dataset)
        ax.set_xlabel("shots per class")
        ax.set_ylabel(items[0]["metric"].replace("_", "-"))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    paths = [output / "accuracy_vs_shots.png", output / "fit_time_vs_accuracy.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    methods = list(dict.fromkeys(a["method"] for a in agg))
    for method in methods:
        items = [a for a in agg if a["method"] == method and a["fit_seconds"]]
        if items:
            ax.scatter([a["fit_seconds"] for a in items], [a["mean"] for a in items],
                       label=method, alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("mean fit time per run (s, log)")
    ax.set_ylabel("accuracy (MCC for amazon_counterfactual_en, macro-F1 multi-label)")
    ax.set_title("fit time vs accuracy (each point: dataset x shots)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths
