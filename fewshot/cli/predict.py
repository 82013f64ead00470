"""``fewshot predict``: labels and class probabilities for new items."""

from __future__ import annotations

import csv
import json
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
from fewshot.errors import UsageError


@handle_errors
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model folder from fewshot train.")],
    data: Annotated[
        Path, typer.Argument(help="JSONL/CSV/Parquet/TXT (one text per line) or image folder.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Predictions file, .jsonl or .csv.")
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
    fmt = output.suffix.lower()
    if fmt not in (".jsonl", ".csv"):
        raise UsageError(f"--output must end in .jsonl or .csv, got '{output.name}'")
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
    if adapt_prior:
        # One pass of the encoder: the head's probabilities serve the estimate and the output.
        raw = clf.predict_proba(ds.items, calibrated=False)
        report = clf._adapt_to(raw).label_shift_
        assert report is not None  # adapt_prior always reports
        info(label_shift_line(report, list(clf.classes_)))
        proba = clf.apply_prior(clf.calibrate(raw))
    else:
        proba = clf.predict_proba(ds.items)
    classes = [str(c) for c in clf.classes_]
    best = proba.argmax(axis=1)
    item_key = "text" if ds.modality == "text" else "path"
    from fewshot._io import atomic_file

    with atomic_file(output, "w") as f:
        if fmt == ".jsonl":
            for i in range(len(ds)):
                row = {
                    "id": ds.ids[i], item_key: ds.display(i), "label": classes[best[i]],
                    "score": round(float(proba[i, best[i]]), 6),
                    "probabilities": {
                        c: round(float(p), 6) for c, p in zip(classes, proba[i], strict=True)
                    },
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            writer = csv.writer(f)
            writer.writerow(["id", item_key, "label", "score", *[f"p_{c}" for c in classes]])
            for i in range(len(ds)):
                writer.writerow([
                    ds.ids[i], ds.display(i), classes[best[i]], f"{proba[i, best[i]]:.6f}",
                    *[f"{p:.6f}" for p in proba[i]],
                ])
    info(f"wrote {len(ds)} predictions to {output}")
