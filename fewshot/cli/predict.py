"""``fewshot predict``: labels and class probabilities for new items."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fewshot.cli._common import (
    BatchOpt,
    CacheDirOpt,
    DeviceOpt,
    EncoderOpt,
    ForceOpt,
    ImageFieldOpt,
    NoCacheOpt,
    SkipBadOpt,
    TextFieldOpt,
    check_modality,
    check_output,
    handle_errors,
    info,
    label_shift_line,
    load_data,
    make_cache,
)


@handle_errors
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model folder from fewshot train.")],
    data: Annotated[
        Path, typer.Argument(help="JSONL/CSV/Parquet/TXT (one text per line) or image folder.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Predictions file, .jsonl, .csv or .parquet.")
    ],
    encoder: EncoderOpt = None,
    split: Annotated[str, typer.Option("--split", help="Split of a dataset folder.")] = "test",
    text_field: TextFieldOpt = "text",
    image_field: ImageFieldOpt = None,
    skip_bad_images: SkipBadOpt = False,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    force: ForceOpt = False,
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
    """Predict DATA with the model in MODEL_DIR; one row per item with probabilities."""
    from fewshot.data.writers import row_format, write_rows

    row_format(output, name="--output")
    check_output(output, force)
    from fewshot.classifier import FewShotClassifier

    clf = FewShotClassifier.load(
        model_dir, encoder=encoder, cache=make_cache(cache_dir, no_cache), device=device,
        batch_size=batch_size,
    )
    ds = load_data(
        data, split, text_field=text_field, label_field="label", image_field=image_field,
        require_labels=False, skip_bad_images=skip_bad_images,
    )
    check_modality(ds, clf.encoder_.modality, data)
    proba = clf.predict_proba(ds.items, adapt_prior=adapt_prior)
    if adapt_prior:
        info(label_shift_line(clf.label_shift_, list(clf.classes_)))
    classes = [str(c) for c in clf.classes_]
    item_key = "text" if ds.modality == "text" else "path"
    rows = (
        {"id": ds.ids[i], item_key: ds.display(i), "label": classes[p.argmax()],
         "score": round(float(p.max()), 6),
         "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p, strict=True)}}
        for i, p in enumerate(proba)
    )
    n = write_rows(output, rows)
    info(f"wrote {n} predictions to {output}")
