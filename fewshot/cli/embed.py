"""``fewshot embed``: embeddings of a dataset to .npy, .safetensors or .parquet."""

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
    make_cache,
    text_encoder_options,
)
from fewshot.errors import UsageError

ChunkOpt = Annotated[
    int, typer.Option("--chunk-size", min=1,
                      help="Rows read, embedded and written together: memory and the work a "
                      "resumed run repeats grow with it.")]
ResumeOpt = Annotated[
    bool, typer.Option("--resume",
                       help="Continue the killed run that left OUTPUT.progress.json, after its "
                       "last finished chunk (same DATA, encoder and options).")]


@handle_errors
def embed(
    data: Annotated[
        Path, typer.Argument(metavar="DATA",
                             help="JSONL/CSV/Parquet/TXT file, image folder, or - (stdin).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output .npy, .safetensors or .parquet file.")
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
    chunk_size: ChunkOpt = 4096,
    resume: ResumeOpt = False,
) -> None:
    """Embed DATA; writes the vectors to OUTPUT and ids/labels to OUTPUT's .ids.json
    (.npy, .safetensors), or rows of id, label and embedding (.parquet).

    DATA is read and OUTPUT written in chunks, so any size fits in memory; a killed
    run continues with --resume.
    """
    suffix = output.suffix.lower()
    if suffix not in (".npy", ".safetensors", ".parquet"):
        raise UsageError(f"--output must end in .npy or .safetensors (vectors, ids beside) "
                         f"or .parquet (rows of id and embedding), got '{output.name}'")
    sidecar = output.with_suffix(".ids.json")
    inputs = {"DATA": data, "--encoder": encoder}
    check_output(output, force and not resume, inputs=inputs)
    if suffix != ".parquet":
        check_not_input(sidecar, inputs)
        if sidecar.exists() and not force:
            raise UsageError(
                f"{sidecar} (the ids file written beside {output.name}) already exists, perhaps "
                f"from an embedding in another format; choose another output name or pass --force"
            )
    if label_sep is not None and not str(data).lower().endswith((".csv", ".tsv")):
        raise UsageError("--label-sep splits CSV cells; drop --label-sep for this data")
    from fewshot.cache import as_cache
    from fewshot.data.streaming import open_source
    from fewshot.encoders import get_encoder
    from fewshot.jobs.embed import embed_file

    source = open_source(data, split, text_field=text_field, image_field=image_field,
                         skip_bad_images=skip_bad_images, label_field=label_field,
                         label_sep=label_sep)
    enc = get_encoder(encoder, source.modality, device=device, batch_size=batch_size,
                      **text_encoder_options(long_texts, source.modality))
    done = embed_file(enc, source, output, cache=as_cache(make_cache(cache_dir, no_cache)),
                      chunk_size=chunk_size, resume=resume, force=force)
    where = f" (ids in {done.sidecar})" if done.sidecar else ""
    resumed = f"; {done.resumed_from} of them before --resume" if done.resumed_from else ""
    info(f"wrote {done.n} x {done.dim} embeddings to {output}{where}{resumed}")
