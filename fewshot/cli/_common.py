"""Options, error handling and output helpers shared by the CLI commands."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated, Any, TypedDict, TypeVar

import typer

from fewshot.errors import FewShotError, UsageError

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
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Items per encoder batch.")]
def _check_device(value: str) -> str:
    """A typo in --device fails now, even when every embedding is already cached."""
    from fewshot.encoders import check_device

    try:
        return check_device(value)
    except UsageError as e:
        raise typer.BadParameter(str(e)) from None


DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto, cpu, cuda, cuda:1, mps.", callback=_check_device)
]
TextFieldOpt = Annotated[str, typer.Option("--text-field", help="Field holding the text.")]
LabelFieldOpt = Annotated[str, typer.Option("--label-field", help="Field holding the label.")]
ImageFieldOpt = Annotated[
    str | None,
    typer.Option("--image-field", help="Field holding image paths (CSV/JSONL of images)."),
]
SkipBadOpt = Annotated[
    bool,
    typer.Option("--skip-bad-images", help="Leave out unreadable images with a warning."),
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output.")]


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


def check_output(path: Path, force: bool, folder_of: Collection[str] | None = None) -> None:
    """Refuse an existing output unless ``force``; for a folder output (``folder_of``: the
    names written into it), refuse even with ``force`` a folder holding anything else."""
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; choose another output or pass --force")
    if folder_of is not None:
        from fewshot._io import replace_refusal

        refusal = replace_refusal(path, folder_of)
        if refusal:
            raise UsageError(refusal)


def make_cache(cache_dir: Path | None, no_cache: bool) -> Any:
    """The embedding cache the options ask for, or None for --no-cache."""
    if no_cache:
        return None
    from fewshot.cache import EmbeddingCache

    return EmbeddingCache(cache_dir)


def check_modality(
    ds: Any, expected: str, name: object, what: str = "the model classifies"
) -> None:
    """Data of the wrong kind (text for an image model, or the reverse) is a usage error."""
    if ds.modality != expected:
        raise UsageError(f"{name} holds {ds.modality} but {what} {expected}; pass matching data")


class DataFields(TypedDict):
    """The field options of :func:`load_data` that a command passes on unchanged."""

    text_field: str
    label_field: str
    image_field: str | None
    skip_bad_images: bool


def load_data(
    path: Path, split: str | None, *, text_field: str, label_field: str,
    image_field: str | None, require_labels: bool, skip_bad_images: bool = False,
) -> Any:
    import warnings

    from fewshot.data import load_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(
            path, split, text_field=text_field, label_field=label_field,
            image_field=image_field, require_labels=require_labels,
            skip_bad_images=skip_bad_images,
        )
    for w in caught:
        info(f"warning: {w.message}")
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
