"""``fewshot bench``: the evaluation protocol over datasets, methods, shots and seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fewshot.cli._common import (
    CacheDirOpt,
    DeviceOpt,
    EncoderOpt,
    NoCacheOpt,
    check_not_input,
    handle_errors,
    info,
    make_cache,
)


@handle_errors
def bench(
    datasets: Annotated[
        list[Path],
        typer.Argument(metavar="DATASET_DIR",
                       help="Dataset folders with train/test splits (the layout of shared/data)."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for results.")],
    shots: Annotated[str, typer.Option("--shots", help="Shots per class, e.g. 8,64.")] = "8,64",
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds, e.g. 0-4 or 0,1.")] = "0-4",
    methods: Annotated[
        str, typer.Option("--methods", help="Comma-separated: logreg, knn, centroid, "
                          "centroid-cl2n, tuned-logreg, tuned-centroid, tuned-cosine-logreg, "
                          "tuned-supcon-logreg, tuned-pairs-logreg, tuned-shared-logreg, "
                          "tuned-refit-logreg, "
                          "setfit-lib. "
                          "Multi-label datasets (label lists) are scored by macro-F1 over "
                          "labels, micro-F1, samples-F1, subset accuracy and Hamming loss.")
    ] = "logreg,knn,centroid",
    encoder: EncoderOpt = None,
    image_encoder: Annotated[
        str | None, typer.Option("--image-encoder", help="Encoder for image datasets.")
    ] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Skip the PNG plots.")] = False,
    device: DeviceOpt = "auto",
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Run the few-shot protocol; writes results.jsonl, summary.md and plots to OUTPUT.

    Resumes: runs already in OUTPUT/results.jsonl with the same encoder and method
    settings are not redone.
    """
    from fewshot.bench import parse_int_list, plot, run_bench, write_summary
    from fewshot.errors import DataError, UsageError

    shot_list, seed_list = parse_int_list(shots), parse_int_list(seeds)
    if min(shot_list) < 1:
        raise UsageError(f"--shots must be at least 1 per class, got {shots}")
    if min(seed_list) < 0:
        raise UsageError(f"--seeds must be 0 or more, got {seeds}")
    check_not_input(output, {"DATASET_DIR": datasets}, folder=True)
    for d in datasets:
        if not d.is_dir():
            raise DataError(f"no dataset folder at {d}; pass folders holding train and test")
    rows = run_bench(
        datasets, output, shots=shot_list, seeds=seed_list,
        methods=[m.strip() for m in methods.split(",") if m.strip()], encoder=encoder,
        image_encoder=image_encoder, cache=make_cache(cache_dir, no_cache), device=device,
        log=info,
    )
    text = write_summary(rows, output / "summary.md")
    if not no_plots:
        for p in plot(rows, output):
            info(f"wrote {p}")
    typer.echo(text)
    failed = [r for r in rows if r.get("error")]
    if failed:
        info(f"{len(failed)} run(s) failed; see the error field in {output / 'results.jsonl'}")
        raise typer.Exit(1)
