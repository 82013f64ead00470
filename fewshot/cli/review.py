"""``fewshot review``: accept confident predictions at a precision target, queue the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fewshot.cli._common import (
    BatchOpt,
    CacheDirOpt,
    DeviceOpt,
    ForceOpt,
    ImageFieldOpt,
    LabelFieldOpt,
    LabelSepOpt,
    ModelEncoderOpt,
    NoCacheOpt,
    SkipBadOpt,
    TextFieldOpt,
    check_modality,
    check_output,
    handle_errors,
    info,
    load_data,
    make_cache,
)
from fewshot.errors import UsageError

ACCEPTED = "accepted"
TO_REVIEW = "to_review"
SUMMARY = "summary.json"
#: Everything a review folder may hold; --force replaces only such folders.
_OUTPUT_FILES = (
    *(f"{name}.{ext}" for name in (ACCEPTED, TO_REVIEW) for ext in ("jsonl", "csv", "parquet")),
    SUMMARY,
)


@handle_errors
def review(
    model_dir: Annotated[
        Path, typer.Argument(metavar="MODEL_DIR", help="Model folder from fewshot train.")
    ],
    data: Annotated[
        Path,
        typer.Argument(metavar="DATA",
                       help="Items to classify: JSONL/CSV/Parquet/TXT or image folder."),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o",
            help="Folder for accepted.jsonl, to_review.jsonl and summary.json.",
        ),
    ],
    target_precision: Annotated[
        float,
        typer.Option(
            "--target-precision", min=0.0, max=1.0,
            help="Precision the accepted predictions should keep (estimated by "
            "cross-validation on the labelled set).",
        ),
    ] = 0.95,
    conformal: Annotated[
        float | None,
        typer.Option(
            "--conformal", min=0.0, max=1.0,
            help="Also give each item a conformal prediction set holding the true label with "
            "this probability, e.g. 0.9.",
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl, csv or parquet for the two item files.")
    ] = "jsonl",
    encoder: ModelEncoderOpt = None,
    split: Annotated[str, typer.Option("--split", help="Split of a dataset folder.")] = "test",
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
    """Split predictions on DATA into accepted and to-review at a precision target.

    Predictions are ranked by calibrated confidence; those at or above the
    threshold that the model's out-of-fold predictions say keeps precision at the
    target are accepted, the rest go to review (least confident first). If DATA
    has labels, the precision actually reached is reported too.
    """
    if fmt not in ("jsonl", "csv", "parquet"):
        raise UsageError(f"--format must be jsonl, csv or parquet, got '{fmt}'")
    from fewshot.data.writers import row_format

    row_format(f"{ACCEPTED}.{fmt}")  # a Parquet output needs pyarrow: checked before any work
    if not 0.0 < target_precision <= 1.0:
        raise UsageError(f"--target-precision must be in (0, 1], got {target_precision}")
    if conformal is not None and not 0.0 < conformal < 1.0:
        raise UsageError(f"--conformal must be in (0, 1), got {conformal}")
    check_output(output, force, folder_of=_OUTPUT_FILES,
                 inputs={"MODEL_DIR": model_dir, "DATA": data, "--encoder": encoder})
    from fewshot.classifier import FewShotClassifier
    from fewshot.confidence.thresholds import review as split_review

    clf = FewShotClassifier.load(
        model_dir, encoder=encoder, cache=make_cache(cache_dir, no_cache), device=device,
        batch_size=batch_size,
    )
    if clf.multi_label_:
        raise UsageError("review accepts or queues one predicted label per item; a multi-label "
                         "model's per-label thresholds are not reviewed yet")
    ds = load_data(
        data, split, text_field=text_field, label_field=label_field, image_field=image_field,
        require_labels=False, skip_bad_images=skip_bad_images, label_sep=label_sep,
    )
    check_modality(ds, clf.encoder_.modality, data)
    if clf.calibrator_ is None:
        from fewshot.errors import ModelError

        raise ModelError(
            f"{model_dir} was trained without calibration, so there is nothing to set a "
            "threshold from; retrain it with fewshot train (calibration is on by default)"
        )
    result = split_review(
        clf, clf.predict_proba(ds.items), target_precision=target_precision,
        conformal=conformal,
    )
    classes = [str(c) for c in clf.classes_]
    summary = result.summary()
    summary.update(model=str(model_dir), data=ds.source, calibration=clf.calibration_info_)
    if ds.labels is not None:
        summary["measured"] = result.measured(ds.labels, classes)
        unknown = sorted(set(ds.labels) - set(classes))
        if unknown:
            info(
                f"warning: {summary['measured']['unknown_labels']} items of {ds.source} have "
                f"labels the model was not trained on ({', '.join(unknown[:5])}"
                f"{' ...' if len(unknown) > 5 else ''}); the measured figures count them as wrong"
            )
    _write(output, ds, result, classes, summary, fmt, force)
    _print_summary(summary, output, fmt)


def _rows(ds: Any, result: Any, classes: list[str], accepted: bool) -> list[dict[str, Any]]:
    """Accepted rows most confident first; rows to review least confident first."""
    import numpy as np

    item_key = "text" if ds.modality == "text" else "path"
    order = np.flatnonzero(result.accepted if accepted else ~result.accepted)
    sign = -1.0 if accepted else 1.0
    order = order[np.argsort(sign * result.confidence[order], kind="stable")]
    rows = []
    for i in order:
        row: dict[str, Any] = {
            "id": ds.ids[i], item_key: ds.display(i), "label": classes[result.predicted[i]],
            "confidence": round(float(result.confidence[i]), 6),
        }
        if result.conformal is not None:
            row["set"] = [c for c, m in zip(classes, result.conformal.sets[i], strict=True) if m]
        if ds.labels is not None:
            row["given_label"] = ds.labels[i]
        row["probabilities"] = {
            c: round(float(p), 6) for c, p in zip(classes, result.proba[i], strict=True)
        }
        rows.append(row)
    return rows


def _write(
    output: Path, ds: Any, result: Any, classes: list[str], summary: dict[str, Any], fmt: str,
    force: bool,
) -> None:
    from fewshot._io import atomic_dir
    from fewshot.data.writers import write_rows

    parts = {name: _rows(ds, result, classes, accepted)
             for name, accepted in ((ACCEPTED, True), (TO_REVIEW, False))}
    # Both CSV files get the same columns, also when one of them has no rows.
    first = next(r for r in parts.values() if r)[0]
    columns = [*(k for k in first if k != "probabilities"), *(f"p_{c}" for c in classes)]
    with atomic_dir(output, overwrite=force, replaceable=_OUTPUT_FILES) as tmp:
        for name, rows in parts.items():
            write_rows(tmp / f"{name}.{fmt}", rows, columns=columns)
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")


def _print_summary(summary: dict[str, Any], output: Path, fmt: str) -> None:
    n, k = summary["n"], summary["n_accepted"]
    if summary["threshold"] is None:
        info(
            f"no confidence threshold reaches precision {summary['target_precision']:.3g} on the "
            f"{summary['n_held_out']} out-of-fold predictions; all {n} items go to review"
        )
    else:
        info(
            f"accepted {k} of {n} ({summary['coverage']:.1%}) at calibrated confidence >= "
            f"{summary['threshold']:.4f}: estimated precision "
            f"{summary['estimated_precision']:.3f} (target {summary['target_precision']:.3g}), "
            f"expected coverage {summary['expected_coverage']:.1%}, from "
            f"{summary['n_held_out']} out-of-fold predictions"
        )
        n_acc, n_eff = summary["n_held_out_accepted"], summary["n_held_out_accepted_effective"]
        rows = f"{n_acc}" if abs(n_acc - n_eff) < 0.05 else f"{n_acc} (effectively {n_eff:.0f})"
        lower = summary["precision_lower_95"]
        firm = lower >= summary["target_precision"] - 0.05
        info(
            f"with {rows} held-out predictions at or above the threshold, precision on new "
            f"data could be as low as {lower:.3f} (approximate one-sided 95% bound)"
            f"{'' if firm else '; label more examples for a firmer estimate'}"
        )
    conf = summary.get("conformal")
    if conf:
        info(
            f"conformal sets at {conf['coverage']:.0%} coverage: mean size "
            f"{conf['mean_set_size']:.2f}, {conf['singletons']:.0%} hold one label"
        )
    measured = summary.get("measured")
    if measured:
        prec = measured["precision_accepted"]
        line = (
            f"measured on the data's labels: precision of accepted "
            f"{'n/a' if prec is None else f'{prec:.3f}'}, accuracy of all "
            f"{measured['accuracy_all']:.3f}"
        )
        if measured.get("conformal_coverage") is not None:
            line += f", conformal set coverage {measured['conformal_coverage']:.3f}"
        info(line)
    info(
        f"wrote {output / f'{ACCEPTED}.{fmt}'} ({k}), {output / f'{TO_REVIEW}.{fmt}'} "
        f"({n - k}) and {output / SUMMARY}"
    )
