"""``fewshot train``: fit an encoder + head on labelled data and save the model folder."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from fewshot.cli._common import (
    BatchOpt,
    CacheDirOpt,
    DataFields,
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
    check_output,
    handle_errors,
    info,
    label_shift_line,
    load_data,
    make_cache,
    parse_params,
    text_encoder_options,
)
from fewshot.errors import DataError, UsageError


@handle_errors
def train(
    data: Annotated[
        Path,
        typer.Argument(metavar="DATA",
                       help="Labelled JSONL/CSV/Parquet, image folder, or dataset folder."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    encoder: EncoderOpt = None,
    long_texts: LongTextsOpt = "truncate",
    head: Annotated[str, typer.Option("--head", help="auto, logreg, knn or centroid.")] = "auto",
    head_param: Annotated[
        list[str] | None,
        typer.Option("--head-param", metavar="KEY=VALUE",
                     help="Head setting (repeatable), e.g. k=10."),
    ] = None,
    shots: Annotated[
        int | None,
        typer.Option(
            "--shots", min=0,
            help="Sample N examples per class (bench protocol); 0 with --label-descriptions "
            "trains from the descriptions alone.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --shots sampling and --tune.")] = 0,
    calibration: Annotated[
        str,
        typer.Option(
            "--calibration",
            help="temperature, isotonic or none: calibrate probabilities on out-of-fold "
            "predictions (also what fewshot review needs).",
        ),
    ] = "temperature",
    calibration_folds: Annotated[
        int, typer.Option("--calibration-folds", min=2, help="Folds for out-of-fold predictions.")
    ] = 5,
    label_descriptions: Annotated[
        Path | None,
        typer.Option(
            "--label-descriptions",
            help='JSON object {"label": "short description"}: descriptions act as extra '
            "examples of their class (text only).",
        ),
    ] = None,
    unlabelled: Annotated[
        Path | None,
        typer.Option(
            "--unlabelled",
            help="Unlabelled items (file or dataset folder) to self-train on with confident "
            "pseudo-labels.",
        ),
    ] = None,
    prior_from: Annotated[
        Path | None,
        typer.Option(
            "--prior-from",
            help="Unlabelled items like the ones the model will see (file or dataset "
            "folder): their class mix is estimated and probabilities are moved to it, when "
            "the model can tell (label-shift correction; needs calibration).",
        ),
    ] = None,
    self_train_rounds: Annotated[
        int, typer.Option("--self-train-rounds", min=1, help="Most self-training rounds.")
    ] = 5,
    pseudo_label_threshold: Annotated[
        float,
        typer.Option(
            "--pseudo-label-threshold", min=0.0, max=1.0,
            help="Calibrated confidence a pool item needs to be pseudo-labelled.",
        ),
    ] = 0.9,
    pseudo_labels_per_class: Annotated[
        int | None,
        typer.Option(
            "--pseudo-labels-per-class", min=1,
            help="Most pseudo-labels per class and round.",
            show_default="labelled examples per class, at least 8",
        ),
    ] = None,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune/--no-tune",
            help="Fine-tune the encoder contrastively on the examples before fitting the head "
            "(SetFit-style; saved in the model folder).",
        ),
    ] = False,
    tune_objective: Annotated[
        str,
        typer.Option("--tune-objective", help="auto (cosine below 20 classes, else supcon "
                     "with a gentler step and 16 classes per batch for text), "
                     "cosine (SetFit's loss on in-batch pairs), supcon, or pairs (SetFit's "
                     "sampled pairs)."),
    ] = "auto",
    tune_param: Annotated[
        list[str] | None,
        typer.Option(
            "--tune-param", metavar="KEY=VALUE",
            help="Tuner setting (repeatable): a ContrastiveTuner argument, e.g. "
            "epochs=4, max_steps=100, time_budget=60 (seconds), learning_rate=2e-5, "
            "validation_fraction=0.2 (held out per class for early stopping).",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split of a dataset folder.")] = "train",
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
    """Train on DATA and save the model folder to OUTPUT.

    By default probabilities are calibrated (temperature scaling on out-of-fold
    predictions), which also keeps what fewshot review needs.
    """
    from fewshot.heads import make_head
    from fewshot.model import MODEL_FILES
    from fewshot.training.fitting import check_calibration

    check_output(output, force, folder_of=MODEL_FILES, inputs={
        "DATA": data, "--label-descriptions": label_descriptions, "--unlabelled": unlabelled,
        "--prior-from": prior_from, "--encoder": encoder,
    })
    check_calibration(calibration, calibration_folds)  # before any data is read
    for option, value in (("--unlabelled", unlabelled), ("--prior-from", prior_from)):
        if value is not None and calibration == "none":
            raise UsageError(f"{option} works on calibrated probabilities; drop --calibration none")
    if shots == 0 and label_descriptions is None:
        raise UsageError("--shots 0 trains from label descriptions; pass --label-descriptions")
    head_obj = make_head(head, **parse_params(head_param))
    tuner = None
    if tune:
        from fewshot.tuning import as_tuner

        tuner = as_tuner({"objective": tune_objective, "seed": seed,
                          **parse_params(tune_param, "--tune-param")})
    elif tune_param or tune_objective != "auto":
        raise UsageError("--tune-param and --tune-objective only apply when tuning; add --tune "
                         "or drop them")
    descriptions = None
    if label_descriptions is not None:
        from fewshot.training.descriptions import read_label_descriptions

        descriptions = read_label_descriptions(label_descriptions)
    fields = DataFields(text_field=text_field, label_field=label_field,
                        image_field=image_field, skip_bad_images=skip_bad_images)
    ds = load_data(data, split, require_labels=True, label_sep=label_sep, **fields)
    classes = ds.classes
    if descriptions is not None:
        from fewshot.training.descriptions import check_descriptions_cover

        missing = check_descriptions_cover(descriptions, classes, ds.source, zero_shot=shots == 0)
        if missing:
            info(f"warning: no description for {', '.join(missing[:5])}; those classes get no "
                 "prior")
    if shots is not None and ds.skipped:
        raise DataError(
            f"--shots samples rows by their position, and the {len(ds.skipped)} unreadable "
            f"image(s) skipped (first: {ds.skipped[0]}) would shift every later row; fix or "
            "remove them, or train on the whole folder without --shots"
        )
    if shots is not None:
        from fewshot.data import few_shot_indices

        _warn_short_classes(ds.labels, shots)
        ds = ds.subset(few_shot_indices(ds.labels, shots, seed) if shots > 0 else [])
    if len(classes) < 2:
        raise DataError(
            f"{ds.source} has a single class ({classes[0]}); a classifier needs at least two"
        )
    from fewshot.data import unlabelled_pool

    pool = shift_items = None
    if unlabelled is not None:
        pool = unlabelled_pool(load_data(unlabelled, split, require_labels=False, **fields), ds)
    if prior_from is not None:
        # The labelled items stay in: they belong to the population whose mix is wanted,
        # and dropping N of every class would skew the pool against small classes.
        shift_items = unlabelled_pool(
            load_data(prior_from, split, require_labels=False, **fields), ds, drop_labelled=False)
    from fewshot.classifier import FewShotClassifier

    start = time.perf_counter()
    options = text_encoder_options(long_texts, ds.modality)
    if options:  # an encoder built here carries the setting into the saved model
        from fewshot.encoders import get_encoder

        built: Any = get_encoder(encoder, ds.modality, device=device,
                                 batch_size=batch_size, **options)
    else:
        built = encoder
    clf = FewShotClassifier(
        built, head_obj, cache=make_cache(cache_dir, no_cache), batch_size=batch_size,
        device=device, calibration=calibration,
        calibration_folds=calibration_folds, label_descriptions=descriptions,
        self_training_rounds=self_train_rounds, pseudo_label_threshold=pseudo_label_threshold,
        pseudo_labels_per_class=pseudo_labels_per_class, tune=tuner,
    ).fit(ds.items, ds.labels, unlabelled=pool)
    if shift_items is not None:
        clf.adapt_prior(shift_items)
    seconds = time.perf_counter() - start
    clf.save(output, overwrite=force)
    info(
        f"trained {head} on {len(ds)} {ds.modality} examples, {len(classes)} classes"
        f"{f' (+ {len(descriptions)} label descriptions)' if descriptions else ''}, "
        f"encoder {clf.encoder_.name} ({seconds:.1f}s); saved to {output}"
    )
    if clf.tuning_ is not None:
        r = clf.tuning_["report"]
        info(
            f"tuning: {r['objective']}, {r['steps']} steps ({r['epochs']:g} epochs) in "
            f"{r['seconds']:.1f}s, stopped by {r['stopped'].replace('_', ' ')}, "
            f"final epoch loss {r['epoch_losses'][-1]:.4f}"
        )
    if clf.calibrator_ is not None:
        info(_calibration_line(clf))
    if clf.model_.thresholds is not None:
        t = clf.model_.thresholds
        info(f"thresholds: one per label, chosen on {t.info['n_held_out']} out-of-fold rows "
             f"({t.info['folds']} folds), {t.values.min():.3g}-{t.values.max():.3g} "
             f"(global {t.info['global']:.3g}); probabilities are the head's own")
    # (with --shots the counts are chosen, and short classes were already warned about)
    single = sorted(c for c, n in _label_counts(ds.labels).items() if n == 1) if shots is None \
        else []
    if single:
        them = "them" if len(single) > 1 else "it"
        why = (f"never held out, so calibration and review thresholds do not cover {them}"
               if clf.calibrator_ is not None else "easy to get wrong")
        info(
            f"warning: {len(single)} class{'es have' if len(single) > 1 else ' has'} a single "
            f"example ({', '.join(single[:5])}{', ...' if len(single) > 5 else ''}): {why}; "
            "add examples, or check for a typo in the label"
        )
    if clf.self_training_ is not None:
        info(_self_training_line(clf.self_training_))
    if clf.label_shift_ is not None:
        info(label_shift_line(clf.label_shift_, list(clf.classes_)))


def _label_counts(labels: list[Any]) -> Counter[str]:
    """Examples per class (per label, for label lists)."""
    if labels and isinstance(labels[0], list):
        return Counter(y for ys in labels for y in ys)
    return Counter(labels)


def _warn_short_classes(labels: list[Any], shots: int) -> None:
    """The protocol takes every example of a class with fewer than --shots; say so."""
    counts = _label_counts(labels)
    short = sorted(c for c, n in counts.items() if n < shots)
    if shots > 0 and short:
        listed = ", ".join(f"{c}: {counts[c]}" for c in short[:5])
        info(
            f"warning: --shots {shots} is more than {len(short)} of {len(counts)} classes "
            f"have ({listed}{', ...' if len(short) > 5 else ''}), so those train on all "
            f"their examples; pass --shots {min(counts.values())} or less for the same "
            "number in every class"
        )


def _calibration_line(clf: Any) -> str:
    cal = clf.calibration_info_
    if cal.get("fallback"):
        return f"calibration: {cal['method']} ({cal['fallback']})"
    extra = ""
    if cal["method"] == "temperature":
        extra = f", T={clf.calibrator_.temperature:.3g}"
        if clf.calibrator_.smoothing > 1e-4:
            extra += f", smoothing={clf.calibrator_.smoothing:.3g}"
    note = ""
    if cal.get("body_tuned_on_all_folds"):
        note = "; the encoder was tuned on all examples, so these lean over-confident"
    return (
        f"calibration: {cal['method']}{extra}, fitted on {cal['n_held_out']} out-of-fold "
        f"predictions ({cal['folds']} folds){note}"
    )


def _self_training_line(report: dict[str, Any]) -> str:
    rounds = report["rounds"]
    if not rounds:
        return (
            f"self-training: added nothing from {report['pool']} pool items (a round adds "
            "only when every class has an item at or above the confidence threshold); "
            "model trained on the labelled data only"
        )
    per_round = ", ".join(f"round {r['round']}: {r['added']}" for r in rounds)
    return (
        f"self-training: {len(rounds)} round(s) added {report['added']} pseudo-labels from a "
        f"pool of {report['pool']} ({per_round})"
    )
