"""Options, error handling and output helpers shared by the CLI commands."""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, TypedDict, TypeVar

import typer

from fewshot.errors import DataError, FewShotError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

# -- options used by several commands ------------------------------------------------
EncoderOpt = Annotated[
    str | None,
    typer.Option(
        "--encoder", "-e",
        help="Model name, folder or local-dir:PATH. Default: all-MiniLM-L6-v2 for text, "
        "DINOv2 ViT-S/14 for images.",
    ),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", envvar="FEWSHOT_CACHE", help="Embedding cache folder.",
        show_default="user cache dir",
    ),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]
ModelEncoderOpt = Annotated[
    str | None,
    typer.Option(
        "--encoder", "-e",
        help="Where the model's encoder is now: a folder or local-dir:PATH. Default: the "
        "model's own encoder; pass a path to point a moved model at its encoder.",
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Items per encoder batch.")]
LongTextsOpt = Annotated[
    str,
    typer.Option(
        "--long-texts",
        help="Texts longer than the encoder reads (256 tokens for all-MiniLM-L6-v2): truncate "
        "(cut, with a warning) or chunk (overlapping windows embedded and averaged; about one "
        "forward pass per window). Text only; saved with a model.",
    ),
]


ThresholdOpt = Annotated[
    float | None,
    typer.Option("--threshold", min=0.0, max=1.0,
                 help="Multi-label models: one probability threshold for every label.",
                 show_default="each label's own, chosen at training on out-of-fold "
                 "probabilities"),
]
MinLabelsOpt = Annotated[
    int, typer.Option("--min-labels", min=0,
                      help="Multi-label models: give every item at least this many labels "
                      "(its most probable ones).")
]


def set_decisions(clf: Any, threshold: float | None, min_labels: int) -> None:
    """--threshold / --min-labels onto a loaded model (multi-label models only)."""
    if (threshold is not None or min_labels) and not clf.multi_label_:
        raise UsageError("--threshold and --min-labels decide label sets; this model gives "
                         "one label per item: drop them")
    clf.set_params(threshold=threshold, min_labels=min_labels)


def text_encoder_options(long_texts: str, modality: str) -> dict[str, Any]:
    """The encoder settings of --long-texts (none for the default)."""
    if long_texts == "truncate":
        return {}
    if modality != "text":
        raise UsageError("--long-texts works with text data only; drop it for images")
    return {"long_texts": long_texts}


def _check_device(value: str) -> str:
    """A typo in --device, or a device this machine lacks, fails now, even when every
    embedding is already cached."""
    from fewshot.encoders import check_device

    try:
        check_device(value)
        if value not in ("auto", "cpu"):
            from fewshot.encoders import resolve_device

            resolve_device(value)  # imports torch: only for a device named explicitly
    except UsageError as e:
        raise typer.BadParameter(str(e)) from None
    return value


DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto, cpu, cuda, cuda:1, mps.", callback=_check_device)
]
TextFieldOpt = Annotated[str, typer.Option("--text-field", help="Field holding the text.")]
LabelFieldOpt = Annotated[
    str,
    typer.Option(
        "--label-field",
        help="Field holding the label, or a list of labels (multi-label). Rows with no "
        "'label' field but a 'labels' list are read from that.",
    ),
]
LabelSepOpt = Annotated[
    str | None,
    typer.Option(
        "--label-sep",
        help="Split a CSV/TSV label column on this string into label lists (multi-label; "
        "for example ';'; an empty cell is no label). JSONL and Parquet rows give a list.",
    ),
]
ImageFieldOpt = Annotated[
    str | None,
    typer.Option("--image-field", help="Field holding image paths (CSV/JSONL of images)."),
]
SkipBadOpt = Annotated[
    bool,
    typer.Option("--skip-bad-images", help="Leave out unreadable images with a warning."),
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output.")]
#: ``--output -``: rows go to stdout.
STDOUT = "-"
RowFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="jsonl, csv or parquet: the format of --output - (stdout). A file is written "
        "in the format its extension names.",
        show_default="jsonl on stdout",
    ),
]


def err(message: str) -> None:
    """One line on stderr."""
    typer.echo(f"error: {message}", err=True)


def info(message: str) -> None:
    typer.echo(message, err=True)


def handle_errors(fn: F) -> F:
    """Expected failures become one stderr line and their exit code, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                # Library warnings (texts cut to the model's length, an unwritable cache)
                # as one line each, like every other message.
                warnings.showwarning = lambda message, *_, **__: info(f"warning: {message}")
                return fn(*args, **kwargs)
        except FewShotError as e:
            err(str(e))
            raise typer.Exit(e.exit_code) from None
        except ModuleNotFoundError as e:
            err(f"{e}; install the missing package (pip install 'fewshot[dev]' has all extras)")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None
        except OSError as e:  # permissions, a folder where a file should go, a full disk
            where = f" {e.filename}" if e.filename else ""
            err(f"cannot read or write{where} ({e.strerror or e}); check the path and its "
                "permissions, or choose another path")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def is_stdout(path: object) -> bool:
    """True for ``--output -``."""
    return str(path) == STDOUT


def output_name(path: object) -> str:
    """How a closing line names an output: its path, or stdout."""
    return "stdout" if is_stdout(path) else str(path)


#: A command's inputs for :func:`check_output`: option or argument name -> path, a list
#: of paths, an encoder name (compared only when it is an existing path), or None.
Inputs = Mapping[str, object]


def check_output(
    path: Path, force: bool, folder_of: Collection[str] | None = None,
    inputs: Inputs | None = None,
) -> None:
    """Refuse an output that is one of ``inputs`` (whatever ``force`` says, see
    :func:`check_not_input`), or that exists unless ``force``; for a folder output
    (``folder_of``: the names written into it), refuse even with ``force`` a folder
    holding anything else."""
    if is_stdout(path):
        if folder_of is not None:
            raise UsageError("--output - (stdout) is for row outputs; give a folder to write")
        return
    check_not_input(path, inputs or {}, folder=folder_of is not None)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; choose another output or pass --force")
    if folder_of is not None:
        from fewshot._io import replace_refusal

        refusal = replace_refusal(path, folder_of)
        if refusal:
            raise UsageError(refusal)


def check_not_input(path: Path, inputs: Inputs, *, folder: bool = False) -> None:
    """A UsageError when writing ``path`` would replace something the command reads.

    Refused: an output that is an input file or folder, a split file of an input
    dataset folder (``DATA/test.jsonl``), and a folder output (``folder``) that
    holds an input. Paths are compared resolved, so ``./x`` and a link to ``x`` are
    ``x``. An output elsewhere inside an input folder (predictions beside the
    data) is fine. Inputs that do not exist are not compared: an encoder name
    such as all-MiniLM-L6-v2 is not a path.
    """
    piped = [name for name, value in inputs.items() if str(value) == "-"]
    if len(piped) > 1:
        raise UsageError(f"{' and '.join(piped)} both read stdin (-); only one input can")
    out = path.expanduser().resolve()
    for name, value in inputs.items():
        values = value if isinstance(value, list | tuple) else [value]
        for raw in values:
            if raw is None:
                continue
            text = str(raw)
            text = text[len("local-dir:"):] if text.startswith("local-dir:") else text
            inp = Path(text).expanduser()
            if not inp.exists():
                continue
            inp = inp.resolve()
            if out == inp or (out.exists() and os.path.samefile(out, inp)):  # hard links too
                raise UsageError(
                    f"the output {path} is also the input {name} ({raw}); writing it would "
                    "replace the input: choose another output"
                )
            if folder and out in inp.parents:
                raise UsageError(
                    f"the output folder {path} holds the input {name} ({raw}); writing it "
                    "would replace the input: choose another output"
                )
            if inp.is_dir() and out.parent == inp and _is_split_file(inp, out):
                raise UsageError(
                    f"the output {path} is the {out.stem} split of the input {name} ({raw}); "
                    "writing it would replace the input: choose another output"
                )


def _is_split_file(folder: Path, file: Path) -> bool:
    from fewshot.data import dataset_splits
    from fewshot.data.loaders import TEXT_SUFFIXES

    splits = dataset_splits(folder)
    return file.name in splits or (file.stem in splits and file.suffix.lower() in TEXT_SUFFIXES)


def make_cache(cache_dir: Path | None, no_cache: bool) -> Any:
    """The embedding cache the options ask for, or None for --no-cache."""
    if no_cache:
        return None
    from fewshot.cache import EmbeddingCache

    return EmbeddingCache(cache_dir)


def check_modality(
    ds: Any, expected: str, name: object, what: str = "the model classifies"
) -> None:
    """Data of the wrong kind (text for an image model, or the reverse) is a DataError."""
    if ds.modality != expected:
        raise DataError(f"{name} holds {ds.modality} but {what} {expected}; pass matching data")


class DataFields(TypedDict):
    """The field options of :func:`load_data` that a command passes on unchanged."""

    text_field: str
    label_field: str
    image_field: str | None
    skip_bad_images: bool


def load_data(
    path: Path, split: str | None, *, text_field: str, label_field: str,
    image_field: str | None, require_labels: bool, skip_bad_images: bool = False,
    skip_reasons: dict[str, str] | None = None, label_sep: str | None = None,
) -> Any:
    """:func:`fewshot.data.load_dataset`, its warnings printed as ``warning:`` lines.

    ``skip_reasons``, when given, receives why each image in ``ds.skipped`` was left
    out (what PIL said), keyed by path. ``label_sep`` (``--label-sep``) is passed only
    for the data whose labels a command reads: it is not one of :class:`DataFields`,
    which also reach unlabelled inputs (a JSONL pool would refuse it).
    """
    import warnings

    from fewshot.data import load_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(
            path, split, text_field=text_field, label_field=label_field, label_sep=label_sep,
            image_field=image_field, require_labels=require_labels,
            skip_bad_images=skip_bad_images,
        )
    for w in caught:
        info(f"warning: {w.message}")
    if skip_reasons is not None:
        messages = [str(w.message) for w in caught]
        for p in ds.skipped:
            prefix = f"skipping unreadable image {p} ("
            said = next((m[len(prefix):-1] for m in messages
                         if m.startswith(prefix) and m.endswith(")")), "")
            skip_reasons[p] = f"unreadable image ({said})" if said else "unreadable image"
    return ds


def parse_params(pairs: list[str] | None, option: str = "--head-param") -> dict[str, Any]:
    """``["k=10", "weights=uniform"]`` -> ``{"k": 10, "weights": "uniform"}``: values are
    read as JSON where they parse (numbers, true, null), else kept as text."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} takes KEY=VALUE, got '{pair}'")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def label_shift_line(report: dict[str, Any], classes: list[Any]) -> str:
    """One line on an estimated class prior: the mix it moved to, or why it was not used."""
    if not report.get("used"):
        return f"class prior: kept the training mix; {report['reason']}"
    pairs = sorted(zip(classes, report["prior"], strict=True), key=lambda cp: -cp[1])
    shown = ", ".join(f"{c} {p:.3f}" for c, p in pairs[:8])
    more = f", ... ({len(pairs) - 8} more)" if len(pairs) > 8 else ""
    return (
        f"class prior: estimated from {report['n_items']} unlabelled items and used "
        f"({shown}{more}); {report['reason']}"
    )
