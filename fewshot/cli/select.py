"""``fewshot select`` (demonstrations for LLM prompts) and ``fewshot suggest`` (what to label)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

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
    NoCacheOpt,
    RowFormatOpt,
    SkipBadOpt,
    TextFieldOpt,
    check_modality,
    check_output,
    handle_errors,
    info,
    load_data,
    make_cache,
    output_name,
)
from fewshot.errors import DataError, UsageError

if TYPE_CHECKING:
    from fewshot.selection.demonstrations import Strategy


@handle_errors
def select(
    pool: Annotated[
        Path, typer.Argument(metavar="POOL", help="Labelled examples to choose from.")
    ],
    queries: Annotated[
        Path, typer.Argument(metavar="QUERIES", help="Items that need demonstrations.")
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Output .jsonl or .parquet file; - for stdout."),
    ],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="jsonl or parquet: the format of --output - (stdout). "
                     "A file is written in the format its extension names.",
                     show_default="jsonl on stdout"),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Examples per query.")] = 4,
    strategy: Annotated[
        str, typer.Option("--strategy", help="nearest, mmr, balanced or random.")
    ] = "nearest",
    mmr_lambda: Annotated[
        float, typer.Option("--mmr-lambda", min=0.0, max=1.0,
                            help="mmr: weight of relevance against diversity.")
    ] = 0.5,
    labels_per_query: Annotated[
        int | None, typer.Option("--labels-per-query", min=1,
                                 help="balanced: show only the m closest labels.")
    ] = None,
    template: Annotated[
        Path | None, typer.Option("--template", help="Jinja2 prompt template file.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed for random.")] = 0,
    encoder: EncoderOpt = None,
    pool_split: Annotated[
        str, typer.Option("--pool-split", help="Split of POOL when it is a dataset folder.")
    ] = "train",
    query_split: Annotated[
        str, typer.Option("--query-split", help="Split of QUERIES when it is a dataset folder.")
    ] = "test",
    text_field: TextFieldOpt = "text",
    label_field: LabelFieldOpt = "label",
    label_sep: LabelSepOpt = None,
    image_field: ImageFieldOpt = None,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    skip_bad_images: SkipBadOpt = False,
    index: Annotated[
        Path | None,
        typer.Option("--index", help="A fewshot index build folder of POOL's embeddings "
                     "(same encoder, POOL's order): searched memory-mapped instead of "
                     "embedding POOL."),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Pick K labelled examples from POOL for each item in QUERIES, in prompt order.

    A multi-label POOL (label lists) gives each example its "labels" list; a
    template's ex.label shows them joined by ", " and ex.labels is the list.
    """
    from fewshot.data.writers import row_format, write_rows
    from fewshot.selection import STRATEGIES, ExampleSelector, PromptTemplate

    row_format(output, (".jsonl", ".parquet"), name="--output", fmt=fmt)
    check_output(output, force, inputs={"POOL": pool, "QUERIES": queries,
                                        "--template": template, "--encoder": encoder,
                                        "--index": index})
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")
    fields = DataFields(text_field=text_field, label_field=label_field,
                        image_field=image_field, skip_bad_images=skip_bad_images)
    pool_ds = load_data(pool, pool_split, require_labels=True, label_sep=label_sep, **fields)
    query_ds = load_data(queries, query_split, require_labels=False, **fields)
    if query_ds.modality != pool_ds.modality:
        raise DataError(
            f"the pool holds {pool_ds.modality} but the queries hold {query_ds.modality}; "
            "give queries of the same kind"
        )
    if k > len(pool_ds):
        raise DataError(f"--k {k} is larger than the pool ({len(pool_ds)} items); lower --k")
    prompt = (PromptTemplate.from_file(template, modality=pool_ds.modality)
              if template is not None else None)
    checked = cast("Strategy", strategy)  # a member of STRATEGIES, checked above
    saved = None
    if index is not None:
        from fewshot.index import load_index

        saved = load_index(index)
        saved.check_ids(pool_ds.ids, "POOL")
    selector = ExampleSelector(
        encoder, k=k, strategy=checked, mmr_lambda=mmr_lambda,
        labels_per_query=labels_per_query, seed=seed, cache=make_cache(cache_dir, no_cache),
        batch_size=batch_size, device=device,
    ).fit(pool_ds.items, pool_ds.labels, index=saved)
    chosen = selector.select(query_ds.items)
    key = "text" if pool_ds.modality == "text" else "path"
    # A multi-label pool's examples carry their label lists, named as in the data.
    label_key = "labels" if pool_ds.multi_label else "label"
    rows = []
    for qi, demos in enumerate(chosen):
        examples = [
            {"index": d.index, "id": pool_ds.ids[d.index], key: pool_ds.display(d.index),
             label_key: d.label, "score": round(d.score, 6)}
            for d in demos
        ]
        row: dict[str, Any] = {"id": query_ds.ids[qi], key: query_ds.display(qi),
                               "examples": examples}
        if prompt is not None:
            row["prompt"] = prompt.render(
                query_ds.display(qi),
                [{"index": d.index, "label": d.label, "score": d.score,
                  "item": pool_ds.display(d.index)} for d in demos],
            )
        rows.append(row)
    write_rows(output, rows, fmt=fmt)
    info(f"wrote {k} {strategy} examples for each of {len(query_ds)} queries to "
         f"{output_name(output)}")


@handle_errors
def suggest(
    pool: Annotated[Path, typer.Argument(metavar="POOL", help="Unlabelled items to choose from.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Output .jsonl, .csv or .parquet; - for stdout."),
    ],
    budget: Annotated[int, typer.Option("--budget", min=1, help="How many items to label.")],
    strategy: Annotated[
        str, typer.Option("--strategy", help="diverse, uncertain, hybrid or random.")
    ] = "hybrid",
    labelled: Annotated[
        Path | None, typer.Option("--labelled", help="Items already labelled (skipped; "
                                  "with no --model, a model is fitted on them).")
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="Model folder whose uncertainty to use.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed for the k-means regions and random.")
    ] = 0,
    label_descriptions: Annotated[
        Path | None,
        typer.Option(
            "--label-descriptions",
            help='JSON object {"label": "short description"} (text only): diverse and '
            "hybrid spread the picks over the labels the descriptions point to.",
        ),
    ] = None,
    fmt: RowFormatOpt = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            "--encoder", "-e",
            help="Model name, folder or local-dir:PATH to embed POOL with. Default: "
            "all-MiniLM-L6-v2 for text, DINOv2 ViT-S/14 for images; with --model, the "
            "model's own encoder (pass a path to point a moved model at its encoder).",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split of a dataset folder.")] = "train",
    text_field: TextFieldOpt = "text",
    label_field: LabelFieldOpt = "label",
    label_sep: LabelSepOpt = None,
    image_field: ImageFieldOpt = None,
    batch_size: BatchOpt = 32,
    device: DeviceOpt = "auto",
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    skip_bad_images: SkipBadOpt = False,
    index: Annotated[
        Path | None,
        typer.Option("--index", help="A fewshot index build folder of POOL's embeddings "
                     "(same encoder, POOL's order): its vectors are read instead of "
                     "embedding POOL."),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Choose the BUDGET items of POOL whose labels would help most, best first.

    Each row has a rank, the item, a reason (the strategy that picked it) and a
    score, higher first: for diverse, the item's cosine similarity to the centre
    of its k-means region (how typical it is of an unlabelled region); for
    uncertain and hybrid, the model's uncertainty, 1 - (top probability - second
    probability), so 1 is a tie between two labels (a multi-label model: its closest
    call, exp(-min over labels of |logit(p) - logit(threshold)|), so 1 is a label on
    its threshold); for random, 0. --labelled may hold label lists (multi-label).
    """
    from fewshot.data.writers import row_format, write_rows
    from fewshot.selection import ANNOTATION_STRATEGIES
    from fewshot.selection import suggest as suggest_indices
    from fewshot.selection.annotation import (
        decision_thresholds,
        labelled_model,
        labelled_model_margins,
    )

    row_format(output, name="--output", fmt=fmt)
    check_output(output, force, inputs={
        "POOL": pool, "--labelled": labelled, "--model": model,
        "--label-descriptions": label_descriptions, "--encoder": encoder, "--index": index,
    })
    if strategy not in ANNOTATION_STRATEGIES:
        raise UsageError(
            f"unknown strategy '{strategy}'; choose one of {', '.join(ANNOTATION_STRATEGIES)}"
        )
    descriptions = None
    if label_descriptions is not None:
        descriptions = _guiding_descriptions(label_descriptions, strategy)
    fields = DataFields(text_field=text_field, label_field=label_field,
                        image_field=image_field, skip_bad_images=skip_bad_images)
    pool_ds = load_data(pool, split, require_labels=False, **fields)
    _check_budget(budget, len(pool_ds), pool_ds.source)  # before any model loads
    cache = make_cache(cache_dir, no_cache)
    from fewshot.cache import embed
    from fewshot.classifier import FewShotClassifier
    from fewshot.encoders import get_encoder

    clf = None
    if model is not None:
        clf = FewShotClassifier.load(model, encoder=encoder, cache=cache, device=device,
                                     batch_size=batch_size)
        enc = clf.encoder_
    else:
        enc = get_encoder(encoder, pool_ds.modality, device=device, batch_size=batch_size)
    check_modality(pool_ds, enc.modality, "the pool", "the model is for")
    prototypes = None
    if descriptions is not None:
        if pool_ds.modality != "text":
            raise DataError(
                "--label-descriptions are embedded as text, so they work with text pools only; "
                "drop it for images"
            )
        prototypes = embed(enc, list(descriptions.values()), cache)
    if index is not None:
        from fewshot.index import load_index

        saved = load_index(index)
        saved.check_ids(pool_ds.ids, "POOL")
        saved.check_encoder(enc)
        X = saved.vectors[:]  # k-means needs every vector: this skips embedding, not memory
    else:
        X = embed(enc, pool_ds.items, cache)
    labelled_idx: list[int] = []
    if labelled is not None:
        lab = load_data(labelled, "train", require_labels=True, label_sep=label_sep, **fields)
        check_modality(lab, enc.modality, labelled, "the pool and model are")
        known = set(map(enc.item_key, lab.items))
        # Every copy of a labelled item counts as labelled, duplicates in the pool too.
        labelled_idx = [i for i, x in enumerate(pool_ds.items) if enc.item_key(x) in known]
        if clf is None and strategy in ("hybrid", "uncertain"):
            clf = labelled_model(enc, lab.items, lab.labels, cache=cache)
    if descriptions is not None and clf is not None:
        model_labels = {str(c) for c in clf.classes_}
        new = [label for label in descriptions if label not in model_labels]
        if new:
            info(
                f"note: the descriptions name {len(new)} label(s) the model does not know "
                f"({', '.join(new[:5])}{', ...' if len(new) > 5 else ''}); picks are spread "
                "over them too, which finds first examples of a new label (if it is a typo, "
                "use the model's labels)"
            )
    _check_budget(budget, len(pool_ds) - len(set(labelled_idx)), pool_ds.source,
                  labelled is not None)
    proba, note = labelled_model_margins(clf, X, strategy=strategy)
    if note is not None:
        info(f"hybrid: {note}")
    picks = suggest_indices(X, budget, strategy=strategy, labelled=labelled_idx, proba=proba,
                            seed=seed, prototypes=prototypes,
                            thresholds=None if proba is None else decision_thresholds(clf))
    key = "text" if pool_ds.modality == "text" else "path"
    write_rows(output, fmt=fmt, rows=(
        {"rank": rank, "index": s.index, "id": pool_ds.ids[s.index],
         key: pool_ds.display(s.index), "reason": s.reason, "score": round(s.score, 6)}
        for rank, s in enumerate(picks, start=1)
    ))
    reasons = {r: sum(s.reason == r for s in picks) for r in {s.reason for s in picks}}
    info(f"wrote {len(picks)} suggestions to {output_name(output)} "
         f"({', '.join(f'{n} {r}' for r, n in sorted(reasons.items()))})")


def _check_budget(budget: int, free: int, source: str, labelled: bool = False) -> None:
    """A budget the pool cannot fill is a DataError (the pool is too small for it)."""
    if budget > free:
        pool = "unlabelled pool" if labelled else "pool"
        raise DataError(
            f"--budget {budget} is larger than the {pool} ({free} items); lower --budget or "
            f"add items to {source}"
        )


def _guiding_descriptions(path: Path, strategy: str) -> dict[str, str]:
    """``--label-descriptions`` for suggest: checked before anything is loaded."""
    from fewshot.training.descriptions import read_label_descriptions

    if strategy in ("random", "uncertain"):
        raise UsageError(
            f"--label-descriptions guides diverse and hybrid only, not {strategy}; drop it "
            "or choose --strategy diverse or hybrid"
        )
    descriptions = read_label_descriptions(path)
    if len(descriptions) < 2:
        raise DataError(f"{path} describes {len(descriptions)} label; give at least two")
    first: dict[str, str] = {}
    for label, text in descriptions.items():
        if text in first:
            raise DataError(
                f"labels {first[text]!r} and {label!r} in {path} have the same description; "
                "make them distinct"
            )
        first[text] = label
    return descriptions
