"""``fewshot evaluate``: accuracy, macro-F1, per-class scores, confusion matrix, calibration."""

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
    ImageFieldOpt,
    LabelFieldOpt,
    LabelSepOpt,
    MinLabelsOpt,
    ModelEncoderOpt,
    NoCacheOpt,
    SkipBadOpt,
    TextFieldOpt,
    ThresholdOpt,
    check_modality,
    handle_errors,
    load_data,
    make_cache,
    set_decisions,
)
from fewshot.errors import DataError


@handle_errors
def evaluate(
    model_dir: Annotated[
        Path, typer.Argument(metavar="MODEL_DIR", help="Model folder from fewshot train.")
    ],
    data: Annotated[
        Path, typer.Argument(metavar="DATA", help="Labelled data, or a dataset folder.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    encoder: ModelEncoderOpt = None,
    split: Annotated[str, typer.Option("--split", help="Split of a dataset folder.")] = "test",
    text_field: TextFieldOpt = "text",
    label_field: LabelFieldOpt = "label",
    label_sep: LabelSepOpt = None,
    image_field: ImageFieldOpt = None,
    skip_bad_images: SkipBadOpt = False,
    threshold: ThresholdOpt = None,
    min_labels: MinLabelsOpt = 0,
    allow_unknown_labels: Annotated[
        bool,
        typer.Option(
            "--allow-unknown-labels",
            help="Score labels the model never saw (always wrong) instead of failing.",
        ),
    ] = False,
    ece_bins: Annotated[
        int, typer.Option("--ece-bins", min=1, help="Equal-width confidence bins for ECE.")
    ] = 15,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Score the model in MODEL_DIR on labelled DATA.

    Also reports expected calibration error (ECE, top-label, equal-width bins) and
    the multi-class Brier score of the model's probabilities, and of the head's
    own probabilities when the model is calibrated.
    """
    from fewshot.classifier import FewShotClassifier
    from fewshot.metrics import classification_report

    start = time.perf_counter()
    clf = FewShotClassifier.load(
        model_dir, encoder=encoder, cache=make_cache(cache_dir, no_cache), device=device,
        batch_size=batch_size,
    )
    ds = load_data(
        data, split, text_field=text_field, label_field=label_field, image_field=image_field,
        require_labels=True, skip_bad_images=skip_bad_images, label_sep=label_sep,
    )
    check_modality(ds, clf.encoder_.modality, data)
    set_decisions(clf, threshold, min_labels)
    known = {str(c) for c in clf.classes_}
    multi = bool(ds.labels) and isinstance(ds.labels[0], list)
    if multi != clf.multi_label_:
        raise DataError(
            f"{ds.source} has {'label lists' if multi else 'one label per row'} but the model "
            f"was trained on {'label lists' if clf.multi_label_ else 'one label per item'}; "
            "evaluate on data of the model's kind"
        )
    unknown = sorted({y for ys in ds.labels for y in ys} - known if multi
                     else set(ds.labels) - known)
    if unknown and not allow_unknown_labels:
        raise DataError(
            f"{ds.source} has labels the model was not trained on: {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}; fix the labels or pass --allow-unknown-labels"
        )
    if multi:
        from fewshot.metrics import multilabel_report

        report = multilabel_report(ds.labels, clf.predict(ds.items),
                                   [str(c) for c in clf.classes_] + unknown)
        report.update(seconds=round(time.perf_counter() - start, 3), model=str(model_dir),
                      data=ds.source)
        if as_json:
            typer.echo(json.dumps(report))
        else:
            _print_multilabel(report)
        return
    raw = clf.predict_proba(ds.items, calibrated=False)
    proba = clf.apply_prior(clf.calibrate(raw))
    pred = [str(p) for p in clf.classes_[proba.argmax(axis=1)]]
    labels = [str(c) for c in clf.classes_] + unknown
    report = classification_report(ds.labels, pred, labels=labels)
    from fewshot.metrics import calibration_scores

    calibrated = clf.calibrator_ is not None
    report.update(
        calibration=clf.calibration_info_.get("method") if calibrated else None,
        class_prior=clf.class_prior_ is not None, ece_bins=ece_bins,
        **calibration_scores(ds.labels, proba, clf.classes_.tolist(),
                             uncalibrated=raw if calibrated else None, n_bins=ece_bins),
    )
    report["seconds"] = round(time.perf_counter() - start, 3)
    report["model"] = str(model_dir)
    report["data"] = ds.source
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_report(report)


def _print_multilabel(report: dict[str, Any]) -> None:
    typer.echo(
        f"n={report['n']}  macro-F1={report['macro_f1']:.4f}  micro-F1={report['micro_f1']:.4f}"
        f"  samples-F1={report['samples_f1']:.4f}  subset accuracy="
        f"{report['subset_accuracy']:.4f}  Hamming loss={report['hamming_loss']:.4f}"
    )
    typer.echo(f"{'label':<24} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}")
    for label, m in report["per_label"].items():
        typer.echo(f"{label[:24]:<24} {m['precision']:>9.4f} {m['recall']:>9.4f} "
                   f"{m['f1']:>9.4f} {m['support']:>8}")


#: Above this many classes the confusion matrix is too wide to read in a terminal: the
#: most frequent confusions are listed instead (the whole matrix is in --json).
MAX_MATRIX_CLASSES = 12


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    cm = report["confusion_matrix"]
    console = Console()
    if not console.is_terminal:  # piped or logged: no 80-column cut of labels
        longest = max((len(str(label)) for label in cm["labels"]), default=0)
        console = Console(width=max(100, longest + 50))
    say = lambda line: console.print(line, soft_wrap=True)  # noqa: E731
    say(
        f"[bold]{escape(str(report['data']))}[/]  n={report['n']}  "
        f"accuracy={report['accuracy']:.4f}  "
        f"macro-F1={report['macro_f1']:.4f}  MCC={report['mcc']:.4f}"
    )
    if report["ece"] is not None:
        line = f"ECE={report['ece']:.4f}  Brier={report['brier']:.4f}"
        if report.get("calibration"):
            line += (
                f"  (calibration: {report['calibration']}"
                f"{' + class prior' if report.get('class_prior') else ''}; uncalibrated ECE="
                f"{report['ece_uncalibrated']:.4f}  Brier={report['brier_uncalibrated']:.4f})"
            )
        left_out = report["n"] - report.get("calibration_rows", report["n"])
        if left_out:
            line += (f"  over the {report['calibration_rows']} rows whose label the model "
                     f"knows ({left_out} left out)")
        say(line)
    table = Table("label", "precision", "recall", "f1", "support")
    for label, s in report["per_class"].items():
        table.add_row(
            Text(str(label)), f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}",
            str(s["support"]),
        )
    console.print(table)
    labels = [str(label) for label in cm["labels"]]
    if len(labels) > MAX_MATRIX_CLASSES:
        pairs = sorted(
            ((n, t, p) for t, row in zip(labels, cm["matrix"], strict=True)
             for p, n in zip(labels, row, strict=True) if t != p and n),
            key=lambda x: (-x[0], x[1], x[2]),
        )
        say(f"confusion matrix: {len(labels)} classes, too many to print (it is in --json); "
            f"most frequent confusions{'' if pairs else ': none'}")
        for n, t, p in pairs[:10]:
            say(f"  {n:>5}  {escape(t)} -> {escape(p)}")
        return
    matrix = Table("true \\ predicted", *map(escape, labels), title="confusion matrix")
    for label, row in zip(labels, cm["matrix"], strict=True):
        matrix.add_row(Text(label), *map(str, row))
    console.print(matrix)
