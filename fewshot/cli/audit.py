"""``fewshot audit``: rank labelled examples by how likely their label is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fewshot.cli._common import (
    BatchOpt,
    CacheDirOpt,
    DeviceOpt,
    EncoderOpt,
    ForceOpt,
    ImageFieldOpt,
    LabelFieldOpt,
    LabelSepOpt,
    NoCacheOpt,
    RowFormatOpt,
    SkipBadOpt,
    TextFieldOpt,
    check_output,
    handle_errors,
    info,
    is_stdout,
    load_data,
    make_cache,
    output_name,
)
from fewshot.errors import DataError, UsageError


@handle_errors
def audit(
    data: Annotated[
        Path,
        typer.Argument(metavar="DATA",
                       help="Labelled JSONL/CSV/Parquet, image folder, or dataset folder."),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o",
            help="Ranked examples, .jsonl, .csv or .parquet (most suspect first); - for "
            "stdout (the report then goes to stderr).",
        ),
    ],
    fmt: RowFormatOpt = None,
    test: Annotated[
        Path | None,
        typer.Option(
            "--test",
            help="Data to look for duplicates of the labelled examples in. Default: the test "
            "split when DATA is a dataset folder.",
        ),
    ] = None,
    head: Annotated[
        str, typer.Option("--head", help="Head for out-of-fold probabilities.")
    ] = "logreg",
    k: Annotated[int, typer.Option("--k", min=1, help="Neighbours for kNN agreement.")] = 10,
    duplicate_threshold: Annotated[
        float,
        typer.Option(
            "--duplicate-threshold", min=0.0, max=1.0,
            help="Cosine similarity at which two examples count as near-duplicates.",
        ),
    ] = 0.95,
    top: Annotated[int, typer.Option("--top", min=0, help="Suspects to list in the report.")] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object.")
    ] = False,
    encoder: EncoderOpt = None,
    split: Annotated[str, typer.Option("--split", help="Split of a dataset folder.")] = "train",
    text_field: TextFieldOpt = "text",
    label_field: LabelFieldOpt = "label",
    label_sep: LabelSepOpt = None,
    image_field: ImageFieldOpt = None,
    skip_bad_images: SkipBadOpt = False,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    force: ForceOpt = False,
) -> None:
    """Audit the labels of DATA: likely label errors, near-duplicates, test leaks, outliers.

    Each example is scored by the out-of-fold probability of its label and by how
    many of its nearest labelled neighbours share it; OUTPUT lists every example,
    most suspect first, and a short report is printed.
    """
    from fewshot.data.writers import row_format, write_rows

    row_format(output, name="--output", fmt=fmt)
    check_output(output, force, inputs={"DATA": data, "--test": test, "--encoder": encoder})
    from fewshot.heads import make_head

    make_head(head)  # an unknown head is a usage error before any work
    ds = load_data(
        data, split, text_field=text_field, label_field=label_field, image_field=image_field,
        require_labels=True, skip_bad_images=skip_bad_images, label_sep=label_sep,
    )
    if ds.multi_label:
        raise UsageError("audit ranks one label per example; label lists (multi-label) are not "
                         "audited yet")
    if len(ds.classes) < 2:
        raise DataError(
            f"{ds.source} has a single class ({ds.classes[0]}); auditing labels needs two or more"
        )
    test_ds = _test_data(data, test, split, text_field, image_field, skip_bad_images)
    if test_ds is not None and test_ds.modality != ds.modality:
        raise DataError(
            f"--test holds {test_ds.modality} but DATA is {ds.modality}; pass matching data"
        )
    import numpy as np

    from fewshot.cache import embed
    from fewshot.confidence.audit import audit_labels
    from fewshot.encoders import get_encoder

    enc = get_encoder(encoder, ds.modality, device=device, batch_size=batch_size)
    cache = make_cache(cache_dir, no_cache)
    Z = embed(enc, ds.items, cache)
    Z_test = embed(enc, test_ds.items, cache) if test_ds is not None else None
    classes = ds.classes
    y_idx = np.asarray([classes.index(y) for y in ds.labels])
    result = audit_labels(
        Z, y_idx, len(classes), head=head, k=k, duplicate_threshold=duplicate_threshold,
        Z_test=Z_test,
    )
    rows = _rows(ds, test_ds, result, classes, y_idx)
    write_rows(output, rows, fmt=fmt)
    report = _report(ds, test_ds, result, rows, classes, y_idx, top)
    to_stderr = is_stdout(output)  # stdout holds the rows
    typer.echo(json.dumps(report) if as_json else _format_report(report), err=to_stderr)
    info(f"wrote {len(rows)} examples to {output_name(output)}, most suspect first")


def _test_data(
    data: Path, test: Path | None, split: str, text_field: str, image_field: str | None,
    skip_bad_images: bool,
) -> Any:
    from fewshot.data import dataset_splits

    if test is None:
        if not (data.is_dir() and split != "test" and "test" in dataset_splits(data)):
            return None
        test, test_split = data, "test"
    else:
        test_split = "test"
    return load_data(
        test, test_split, text_field=text_field, label_field="label", image_field=image_field,
        require_labels=False, skip_bad_images=skip_bad_images,
    )


def _rows(ds: Any, test_ds: Any, result: Any, classes: list[str], y_idx: Any) -> list[dict]:
    import math

    item_key = "text" if ds.modality == "text" else "path"
    group_of: dict[int, list[int]] = {}
    for g in result.duplicate_groups:
        for r in g:
            group_of[r] = g
    rows = []
    for rank, i in enumerate(result.order.tolist(), start=1):
        group = group_of.get(i, [])
        flags = []
        if result.suggested[i] != y_idx[i]:
            flags.append("label_disagrees")
        if group:
            conflict = len({int(y_idx[j]) for j in group}) > 1
            flags.append("conflicting_duplicate" if conflict else "near_duplicate")
        if i in result.test_duplicates:
            flags.append("in_test")
        if result.outlier[i]:
            flags.append("outlier")
        p = float(result.label_proba[i])
        rows.append({
            "rank": rank, "id": ds.ids[i], item_key: ds.display(i), "label": ds.labels[i],
            "suggested_label": classes[int(result.suggested[i])],
            "suspicion": round(float(result.suspicion[i]), 6),
            "label_probability": None if math.isnan(p) else round(p, 6),
            "knn_agreement": round(float(result.knn_agreement[i]), 6),
            "flags": flags,
            "duplicates": [ds.ids[j] for j in group if j != i],
            "test_duplicates": [test_ds.ids[j] for j, _ in result.test_duplicates.get(i, [])],
        })
    return rows


def _report(
    ds: Any, test_ds: Any, result: Any, rows: list[dict], classes: list[str], y_idx: Any,
    top: int,
) -> dict[str, Any]:
    conflicting = result.conflicting_groups(y_idx)
    return {
        "data": ds.source,
        "n": len(ds),
        "classes": {c: int((y_idx == i).sum()) for i, c in enumerate(classes)},
        "label_disagrees": sum("label_disagrees" in r["flags"] for r in rows),
        "top": rows[:top],
        "duplicate_groups": [[ds.ids[j] for j in g] for g in result.duplicate_groups],
        "conflicting_groups": [[ds.ids[j] for j in g] for g in conflicting],
        "test": test_ds.source if test_ds is not None else None,
        "test_duplicates": [
            {"id": ds.ids[i], "test_ids": [test_ds.ids[j] for j, _ in pairs]}
            for i, pairs in sorted(result.test_duplicates.items())
        ],
        "outliers": [ds.ids[i] for i in result.order.tolist() if result.outlier[i]],
    }


def _format_report(report: dict[str, Any]) -> str:
    def short(text: str, width: int = 70) -> str:
        text = " ".join(str(text).split())
        return text if len(text) <= width else text[: width - 3] + "..."

    lines = [
        f"audited {report['n']} labelled examples in {len(report['classes'])} classes "
        f"({report['data']})",
        f"{report['label_disagrees']} examples' out-of-fold prediction disagrees with their label",
    ]
    if report["top"]:
        lines.append(f"most likely mislabelled (top {len(report['top'])}):")
        for r in report["top"]:
            item = r.get("text", r.get("path", ""))
            p = r["label_probability"]
            if p is None:  # never held out: no out-of-fold prediction to agree or not
                label = f"{r['label']} (no out-of-fold prediction: one example of its class)"
            elif r["suggested_label"] != r["label"]:
                label = f"{r['label']} -> {r['suggested_label']}?"
            else:
                label = f"{r['label']} (model agrees)"
            lines.append(
                f"  {r['rank']:>3}. [{r['id']}] {label}  "
                f"p(label)={'n/a' if p is None else f'{p:.2f}'} "
                f"neighbours agree={r['knn_agreement']:.2f}  {short(item)}"
            )
    groups, conflicts = report["duplicate_groups"], report["conflicting_groups"]
    lines.append(
        f"near-duplicate groups: {len(groups)} ({sum(map(len, groups))} examples), "
        f"{len(conflicts)} with conflicting labels"
        + (f": {'; '.join(', '.join(g) for g in conflicts[:5])}" if conflicts else "")
    )
    if report["test"] is not None:
        leaks = report["test_duplicates"]
        lines.append(
            f"duplicates in {report['test']}: {len(leaks)} labelled examples"
            + (f" ({', '.join(d['id'] for d in leaks[:10])})" if leaks else "")
        )
    outliers = report["outliers"]
    lines.append(
        f"outliers: {len(outliers)}" + (f" ({', '.join(outliers[:10])})" if outliers else "")
    )
    return "\n".join(lines)
