"""``fewshot predict``: labels and class probabilities for new items."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fewshot.cli._common import (
    BatchOpt,
    CacheDirOpt,
    DeviceOpt,
    ForceOpt,
    ImageFieldOpt,
    MinLabelsOpt,
    ModelEncoderOpt,
    NoCacheOpt,
    RowFormatOpt,
    SkipBadOpt,
    TextFieldOpt,
    ThresholdOpt,
    check_modality,
    check_output,
    handle_errors,
    info,
    label_shift_line,
    load_data,
    make_cache,
    output_name,
    set_decisions,
)


@handle_errors
def predict(
    model_dir: Annotated[
        Path, typer.Argument(metavar="MODEL_DIR", help="Model folder from fewshot train.")
    ],
    data: Annotated[
        Path,
        typer.Argument(metavar="DATA",
                       help="JSONL/CSV/Parquet/TXT (one text per line), image folder, or - to read "
                       "stdin (JSONL, or one text per line)."),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o",
                     help="Predictions file, .jsonl, .csv or .parquet; - for stdout."),
    ],
    fmt: RowFormatOpt = None,
    encoder: ModelEncoderOpt = None,
    split: Annotated[str, typer.Option("--split", help="Split of a dataset folder.")] = "test",
    text_field: TextFieldOpt = "text",
    image_field: ImageFieldOpt = None,
    skip_bad_images: SkipBadOpt = False,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    force: ForceOpt = False,
    threshold: ThresholdOpt = None,
    min_labels: MinLabelsOpt = 0,
    adapt_prior: Annotated[
        bool,
        typer.Option(
            "--adapt-prior",
            help="Estimate the class mix of DATA itself and move probabilities to it, when "
            "the model can tell (label-shift correction; needs a calibrated model). "
            "Replaces a prior saved with the model.",
        ),
    ] = False,
) -> None:
    """Predict DATA with the model in MODEL_DIR; one row per item with probabilities.

    With --skip-bad-images every row has an error field: empty for a prediction, and
    why for an image that was left out (its row has no label).
    """
    from fewshot.data.writers import row_format, write_rows

    row_format(output, name="--output", fmt=fmt)
    check_output(output, force, inputs={"MODEL_DIR": model_dir, "DATA": data,
                                        "--encoder": encoder})
    from fewshot.classifier import FewShotClassifier

    clf = FewShotClassifier.load(
        model_dir, encoder=encoder, cache=make_cache(cache_dir, no_cache), device=device,
        batch_size=batch_size,
    )
    skipped: dict[str, str] = {}
    ds = load_data(
        data, split, text_field=text_field, label_field="label", image_field=image_field,
        require_labels=False, skip_bad_images=skip_bad_images, skip_reasons=skipped,
    )
    check_modality(ds, clf.encoder_.modality, data)
    set_decisions(clf, threshold, min_labels)
    proba = clf.predict_proba(ds.items, adapt_prior=adapt_prior)
    if adapt_prior:
        info(label_shift_line(clf.label_shift_, list(clf.classes_)))
    item_key = "text" if ds.modality == "text" else "path"
    answers = clf.model_.prediction_rows(proba, threshold=clf.threshold,
                                         min_labels=clf.min_labels)
    rows: list[dict[str, Any]] = [{"id": ds.ids[i], item_key: ds.display(i), **answer}
                                  for i, answer in enumerate(answers)]
    if skip_bad_images:  # every row has the field, so CSV has the column
        for row in rows:
            row["error"] = None
        rows += [{"id": _skipped_id(ds.source, path), item_key: path, "label": None,
                  "score": None, "probabilities": None, "error": why}
                 for path, why in skipped.items()]
    write_rows(output, rows, fmt=fmt)
    left_out = f" and {len(skipped)} rows for skipped images (see their error)" if skipped else ""
    info(f"wrote {len(proba)} predictions{left_out} to {output_name(output)}")


def _skipped_id(source: str, path: str) -> str | None:
    """A skipped image's id as the folder loader gives one (its path in the folder)."""
    folder = Path(source)
    if not folder.is_dir():
        return None
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return None
