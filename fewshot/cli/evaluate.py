"""``fewshot evaluate``: accuracy, macro-F1, per-class scores, confusion matrix."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from fewshot.cli._common import (
    BatchOpt,
    CacheDirOpt,
    DeviceOpt,
    EncoderOpt,
    ImageFieldOpt,
    LabelFieldOpt,
    NoCacheOpt,
    SkipBadOpt,
    TextFieldOpt,
    handle_errors,
    load_data,
    make_cache,
)
from fewshot.errors import DataError


@handle_errors
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Model folder from fewshot train.")],
    data: Annotated[Path, typer.Argument(help="Labelled data, or a dataset folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    encoder: EncoderOpt = None,
    split: Annotated[str, typer.Option("--split", help="Split of a dataset folder.")] = "test",
    text_field: TextFieldOpt = "text",
    label_field: LabelFieldOpt = "label",
    image_field: ImageFieldOpt = None,
    skip_bad_images: SkipBadOpt = False,
    allow_unknown_labels: Annotated[
        bool,
        typer.Option(
            "--allow-unknown-labels",
            help="Score labels the model never saw (always wrong) instead of failing.",
        ),
    ] = False,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Score the model in MODEL_DIR on labelled DATA."""
    from fewshot.classifier import FewShotClassifier
    from fewshot.metrics import classification_report

    start = time.perf_counter()
    clf = FewShotClassifier.load(
        model_dir, encoder=encoder, cache=make_cache(cache_dir, no_cache), device=device,
        batch_size=batch_size,
    )
    ds = load_data(
        data, split, text_field=text_field, label_field=label_field, image_field=image_field,
        require_labels=True, skip_bad_images=skip_bad_images,
    )
    known = {str(c) for c in clf.classes_}
    unknown = sorted(set(ds.labels) - known)
    if unknown and not allow_unknown_labels:
        raise DataError(
            f"{ds.source} has labels the model was not trained on: {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}; fix the labels or pass --allow-unknown-labels"
        )
    pred = [str(p) for p in clf.predict(ds.items)]
    labels = [str(c) for c in clf.classes_] + unknown
    report = classification_report(ds.labels, pred, labels=labels)
    report["seconds"] = round(time.perf_counter() - start, 3)
    report["model"] = str(model_dir)
    report["data"] = ds.source
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{report['data']}[/]  n={report['n']}  accuracy={report['accuracy']:.4f}  "
        f"macro-F1={report['macro_f1']:.4f}  MCC={report['mcc']:.4f}"
    )
    table = Table("label", "precision", "recall", "f1", "support")
    for label, s in report["per_class"].items():
        table.add_row(
            label, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}",
            str(s["support"]),
        )
    console.print(table)
    cm = report["confusion_matrix"]
    matrix = Table("true \\ predicted", *cm["labels"], title="confusion matrix")
    for label, row in zip(cm["labels"], cm["matrix"], strict=True):
        matrix.add_row(label, *map(str, row))
    console.print(matrix)
