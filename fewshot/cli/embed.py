"""``fewshot embed``: embeddings of a dataset to .npy or .safetensors."""

from __future__ import annotations

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
    LabelFieldOpt,
    LabelSepOpt,
    LongTextsOpt,
    NoCacheOpt,
    SkipBadOpt,
    TextFieldOpt,
    check_not_input,
    check_output,
    handle_errors,
    info,
    load_data,
    make_cache,
    text_encoder_options,
)
from fewshot.errors import UsageError


@handle_errors
def embed(
    data: Annotated[
        Path, typer.Argument(metavar="DATA", help="JSONL/CSV/Parquet/TXT file or image folder.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output .npy or .safetensors file.")
    ],
    encoder: EncoderOpt = None,
    long_texts: LongTextsOpt = "truncate",
    split: Annotated[
        str | None, typer.Option("--split", help="Split of a dataset folder (train, test).")
    ] = None,
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
    """Embed DATA; writes the vectors to OUTPUT and ids/labels to OUTPUT's .ids.json."""
    suffix = output.suffix.lower()
    if suffix not in (".npy", ".safetensors"):
        raise UsageError(f"--output must end in .npy or .safetensors, got '{output.name}'")
    sidecar = output.with_suffix(".ids.json")
    inputs = {"DATA": data, "--encoder": encoder}
    check_output(output, force, inputs=inputs)
    check_not_input(sidecar, inputs)
    if sidecar.exists() and not force:
        raise UsageError(
            f"{sidecar} (the ids file written beside {output.name}) already exists, perhaps "
            f"from an embedding in another format; choose another output name or pass --force"
        )
    ds = load_data(
        data, split, text_field=text_field, label_field=label_field, image_field=image_field,
        require_labels=False, skip_bad_images=skip_bad_images, label_sep=label_sep,
    )
    import numpy as np

    from fewshot._io import atomic_file
    from fewshot.cache import embed as cached_embed
    from fewshot.encoders import get_encoder

    enc = get_encoder(encoder, ds.modality, device=device, batch_size=batch_size,
                      **text_encoder_options(long_texts, ds.modality))
    vectors = cached_embed(enc, ds.items, make_cache(cache_dir, no_cache))
    meta = {"encoder": enc.name, "encoder_id": enc.id, "dim": enc.dim, "n": len(ds)}
    with atomic_file(output) as f:
        if suffix == ".npy":
            np.save(f, vectors, allow_pickle=False)
        else:
            from safetensors.numpy import save

            f.write(save({"embeddings": vectors}, metadata={k: str(v) for k, v in meta.items()}))
    with atomic_file(sidecar, "w") as f:
        json.dump({**meta, "ids": ds.ids, "labels": ds.labels}, f)
        f.write("\n")
    info(f"wrote {len(ds)} x {enc.dim} embeddings to {output} (ids in {sidecar})")
