"""``fewshot distill``: train a smaller, faster student to match a trained model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from fewshot.cli._common import (
    BatchOpt,
    CacheDirOpt,
    DeviceOpt,
    ForceOpt,
    ImageFieldOpt,
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


@handle_errors
def distill(
    teacher_dir: Annotated[
        Path,
        typer.Argument(metavar="TEACHER_DIR", help="Model folder of the teacher (fewshot train)."),
    ],
    data: Annotated[
        Path,
        typer.Argument(metavar="DATA",
                       help="Unlabelled items: JSONL/CSV/Parquet/TXT, image folder or dataset "
                       "folder (labels, if any, are ignored)."),
    ],
    student: Annotated[
        str,
        typer.Option("--student", help="Student encoder: a name, local folder or local-dir:PATH."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    head: Annotated[str, typer.Option("--head", help="auto, logreg, knn or centroid.")] = "auto",
    teacher_encoder: Annotated[
        str | None,
        typer.Option("--teacher-encoder",
                     help="Where the teacher's encoder is now, if its folder has moved "
                     "(it must be the same model)."),
    ] = None,
    tune: Annotated[
        bool,
        typer.Option("--tune/--no-tune",
                     help="Tune the student body on the teacher's pair similarities."),
    ] = True,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the pairs.")] = 1,
    max_steps: Annotated[
        int, typer.Option("--max-steps", min=1, help="Cap on the student's optimizer steps.")
    ] = 500,
    max_items: Annotated[
        int, typer.Option("--max-items", min=2, help="Use at most this many pool items (seeded).")
    ] = 20000,
    seed: Annotated[int, typer.Option("--seed", help="Seed for sampling and tuning.")] = 0,
    split: Annotated[str, typer.Option("--split", help="Split of a dataset folder.")] = "train",
    text_field: TextFieldOpt = "text",
    image_field: ImageFieldOpt = None,
    skip_bad_images: SkipBadOpt = False,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    force: ForceOpt = False,
) -> None:
    """Distil the model in TEACHER_DIR into a STUDENT encoder on unlabelled DATA.

    The student body learns the teacher's similarity of item pairs (as in the
    SetFit paper's distillation), then its head learns the teacher's labels.
    """
    from fewshot.classifier import FewShotClassifier
    from fewshot.model import MODEL_FILES

    check_output(output, force, folder_of=MODEL_FILES, inputs={  # before the slower imports
        "TEACHER_DIR": teacher_dir, "DATA": data, "--teacher-encoder": teacher_encoder,
        "--student": student,
    })
    from fewshot.distillation import distill as run_distill
    from fewshot.encoders import get_encoder
    from fewshot.heads import make_head

    make_head(head)  # an unknown head fails now, not after the tuning
    cache = make_cache(cache_dir, no_cache)
    teacher = FewShotClassifier.load(teacher_dir, encoder=teacher_encoder, cache=cache,
                                     device=device, batch_size=batch_size)
    ds = load_data(
        data, split, text_field=text_field, label_field="label", image_field=image_field,
        require_labels=False, skip_bad_images=skip_bad_images,
    )
    modality = teacher.encoder_.modality
    check_modality(ds, modality, data, "the teacher classifies")
    student_enc = get_encoder(student, modality, device=device, batch_size=batch_size)
    start = time.perf_counter()
    clf = run_distill(
        teacher, ds.items, student_enc, head=head,
        tune={"epochs": epochs, "max_steps": max_steps} if tune else False,
        max_items=max_items, seed=seed, cache=cache,
    )
    seconds = time.perf_counter() - start
    clf.save(output, overwrite=force)
    d = clf.distillation_
    info(
        f"distilled {teacher_dir} into {student} on {d['pool']} unlabelled items "
        f"({seconds:.1f}s): the student agrees with the teacher on "
        f"{d['agreement_on_pool']:.1%} of them; saved to {output}"
    )
    if d["teacher_classes_never_predicted"]:
        info("warning: the teacher never predicted "
             f"{', '.join(d['teacher_classes_never_predicted'][:5])} on this pool, so the "
             "student cannot predict it; pass a pool that covers every class")
