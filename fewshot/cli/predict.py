"""``fewshot predict``: labels and class probabilities for new items, in chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    check_output,
    handle_errors,
    info,
    is_stdout,
    label_shift_line,
    make_cache,
    output_name,
    set_decisions,
)
from fewshot.errors import DataError, UsageError

#: Rows per chunk by default (the value of fewshot.jobs.predict.DEFAULT_CHUNK, kept here
#: so --help needs no import of the runner).
DEFAULT_CHUNK = 4096

ChunkOpt = Annotated[
    int, typer.Option("--chunk-size", min=1,
                      help="Rows read, predicted and written together: memory and the work "
                      "a resumed run repeats grow with it.")]
ResumeOpt = Annotated[
    bool, typer.Option("--resume",
                       help="Continue the killed run that left OUTPUT.progress.json, after its "
                       "last finished chunk (same DATA, model and options).")]
EngineOpt = Annotated[
    str, typer.Option("--engine",
                      help="local: this process, chunk by chunk; ray: a Ray Data pipeline "
                      "(pip install 'fewshot[ray]'), on --ray-address or a local Ray.")]
RayAddressOpt = Annotated[
    str | None, typer.Option("--ray-address",
                             help="An existing Ray cluster: auto, or ray://HOST:PORT. The "
                             "model folder and DATA must be at the same path on every node.",
                             show_default="a local Ray on this machine")]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=1,
                             help="Ray workers (actors), each loading the model once.",
                             show_default="one per GPU, else one per 2 CPUs")]


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
            "Replaces a prior saved with the model. Reads DATA twice (once to estimate).",
        ),
    ] = False,
    chunk_size: ChunkOpt = DEFAULT_CHUNK,
    resume: ResumeOpt = False,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Predict DATA with the model in MODEL_DIR; one row per item with probabilities.

    DATA is read and OUTPUT written in chunks, so any size fits in memory; a killed
    run continues with --resume. With --skip-bad-images every row has an error field:
    empty for a prediction, and why for an image that was left out (its row has no
    label). --engine ray runs the job on a Ray cluster (OUTPUT is then a folder).
    """
    from fewshot.data.writers import row_format

    row_format(output, name="--output", fmt=fmt)
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, got '{engine}'")
    if engine == "ray":
        _check_ray_options(output, adapt_prior, resume, skip_bad_images)
    elif ray_address is not None or workers is not None:
        raise UsageError("--ray-address and --workers are for --engine ray; add --engine ray "
                         "or drop them")
    check_output(output, force and not resume, inputs={"MODEL_DIR": model_dir, "DATA": data,
                                                       "--encoder": encoder})
    if engine == "ray":
        from fewshot.jobs.ray_engine import predict_ray

        ran = predict_ray(
            model_dir, data, output, fmt=fmt, encoder=encoder, split=split,
            text_field=text_field, image_field=image_field, batch_size=batch_size,
            device=device, threshold=threshold, min_labels=min_labels, address=ray_address,
            workers=workers, force=force)
        info(f"wrote {ran.predicted} predictions to {output}/ ({ran.files} files, "
             f"{ran.workers} Ray workers)")
        return
    from fewshot.classifier import FewShotClassifier
    from fewshot.data.streaming import open_source
    from fewshot.jobs.predict import predict_file

    source = open_source(data, split, text_field=text_field, image_field=image_field,
                         skip_bad_images=skip_bad_images)
    clf = FewShotClassifier.load(
        model_dir, encoder=encoder, cache=make_cache(cache_dir, no_cache), device=device,
        batch_size=batch_size,
    )
    if source.modality != clf.encoder_.modality:
        raise DataError(f"{data} holds {source.modality} but the model classifies "
                        f"{clf.encoder_.modality}; pass matching data")
    set_decisions(clf, threshold, min_labels)
    done = predict_file(clf, source, output, model_dir=model_dir, fmt=fmt,
                        chunk_size=chunk_size, resume=resume, force=force,
                        adapt_prior=adapt_prior)
    if adapt_prior:
        info(label_shift_line(clf.label_shift_, list(clf.classes_)))
    left_out = (f" and {done.skipped} rows for skipped images (see their error)"
                if done.skipped else "")
    resumed = f" ({done.resumed_from} of them before --resume)" if done.resumed_from else ""
    info(f"wrote {done.predicted} predictions{left_out} to {output_name(output)}{resumed}")


def _check_ray_options(output: Path, adapt_prior: bool, resume: bool, skip_bad: bool) -> None:
    """Options the Ray engine does not take, refused in one line before Ray starts."""
    for given, name, why in (
        (adapt_prior, "--adapt-prior", "it needs every row's probabilities in one place"),
        (resume, "--resume", "Ray retries failed tasks itself; rerun to redo a failed job"),
        (skip_bad, "--skip-bad-images", "the Ray engine reads text data"),
    ):
        if given:
            raise UsageError(f"{name} works with --engine local only ({why}); drop {name} "
                             "or use --engine local")
    if is_stdout(output):
        raise UsageError("--engine ray writes a folder of files; give --output a path "
                         "(out.parquet or out.jsonl), not -")
