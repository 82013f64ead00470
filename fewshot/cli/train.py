"""``fewshot train``: fit an encoder + head on labelled data and save the model folder."""

from __future__ import annotations

import time
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
    LabelFieldOpt,
    NoCacheOpt,
    SkipBadOpt,
    TextFieldOpt,
    check_output,
    handle_errors,
    info,
    load_data,
    make_cache,
    parse_params,
)
from fewshot.errors import UsageError


@handle_errors
def train(
    data: Annotated[
        Path, typer.Argument(help="Labelled JSONL/CSV/Parquet, image folder, or dataset folder.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    encoder: EncoderOpt = None,
    head: Annotated[str, typer.Option("--head", help="logreg, knn or centroid.")] = "logreg",
    head_param: Annotated[
        list[str] | None,
        typer.Option("--head-param", help="Head setting KEY=VALUE (repeatable), e.g. k=10."),
    ] = None,
    shots: Annotated[
        int | None,
        typer.Option("--shots", min=1, help="Sample N examples per class (bench protocol)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --shots sampling.")] = 0,
    split: Annotated[str, typer.Option("--split", help="Split of a dataset folder.")] = "train",
    text_field: TextFieldOpt = "text",
    label_field: LabelFieldOpt = "label",
    image_field: ImageFieldOpt = None,
    skip_bad_images: SkipBadOpt = False,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    force: ForceOpt = False,
) -> None:
    """Train on DATA and save the model folder to OUTPUT."""
    from fewshot.heads import make_head

    check_output(output, force)
    head_obj = make_head(head, **parse_params(head_param))
    ds = load_data(
        data, split, text_field=text_field, label_field=label_field, image_field=image_field,
        require_labels=True, skip_bad_images=skip_bad_images,
    )
    if shots is not None:
        from fewshot.data import few_shot_indices

        ds = ds.subset(few_shot_indices(ds.labels, shots, seed))
    if len(ds.classes) < 2:
        raise UsageError(
            f"{ds.source} has a single class ({ds.classes[0]}); a classifier needs at least two"
        )
    from fewshot.classifier import FewShotClassifier

    start = time.perf_counter()
    clf = FewShotClassifier(
        encoder, head_obj, cache=make_cache(cache_dir, no_cache), batch_size=batch_size,
        device=device,
    ).fit(ds.items, ds.labels)
    seconds = time.perf_counter() - start
    clf.save(output, overwrite=force)
    info(
        f"trained {head} on {len(ds)} {ds.modality} examples, {len(ds.classes)} classes, "
        f"encoder {clf.encoder_.name} ({seconds:.1f}s); saved to {output}"
    )
