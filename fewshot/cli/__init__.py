"""The ``fewshot`` command line (typer). Heavy libraries load inside commands only."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from fewshot._version import __version__
from fewshot.cli import (
    audit,
    bench,
    distill,
    embed,
    evaluate,
    export,
    index,
    predict,
    review,
    serve,
    train,
)
from fewshot.cli import select as select_cmd

__all__ = ["app", "main"]


class _Command(TyperCommand):
    """Help as the README writes it: ``Usage: fewshot predict [OPTIONS] MODEL_DIR DATA``
    (typer puts required arguments in braces) and no ``<bool>`` beside a flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [re.sub(r"\{([^{}]+)\}", r"\1", piece)
                for piece in super().collect_usage_pieces(ctx)]

    def get_help_option(self, ctx: Any) -> Any:
        return _no_metavar(super().get_help_option(ctx))


class _Group(TyperGroup):
    def get_help_option(self, ctx: Any) -> Any:
        return _no_metavar(super().get_help_option(ctx))


def _no_metavar(option: Any) -> Any:
    if option is not None:
        option.metavar = ""
    return option


app = typer.Typer(
    cls=_Group,
    name="fewshot",
    help="Few-shot text and image classification on frozen pretrained encoders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _name, _fn in (
    ("embed", embed.embed), ("train", train.train), ("predict", predict.predict),
    ("evaluate", evaluate.evaluate), ("bench", bench.bench), ("review", review.review),
    ("audit", audit.audit), ("distill", distill.distill), ("select", select_cmd.select),
    ("suggest", select_cmd.suggest), ("export", export.export), ("serve", serve.serve),
):
    app.command(_name, cls=_Command, no_args_is_help=True)(_fn)
app.add_typer(index.app, name="index", cls=_Group)
for _info in index.app.registered_commands:  # the same help style for `fewshot index X`
    _info.cls = _Command


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fewshot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, metavar="",
                     help="Show version.")
    ] = False,
) -> None:
    """Few-shot text and image classification on frozen pretrained encoders."""


def main() -> None:
    """The ``fewshot`` script: like ``app()``, but a usage error is one line, as every
    other error is (``error: ...; see 'fewshot CMD --help'``, exit code 2)."""
    import sys

    try:
        code = app(standalone_mode=False, prog_name="fewshot")
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        code = 1
    except Exception as e:
        # click's exceptions, which typer may vendor as typer._click: matched by their
        # attributes, so either copy is caught.
        code = getattr(e, "exit_code", None)
        if not hasattr(e, "format_message") or not isinstance(code, int):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":  # a bare command prints its help
            e.show()  # type: ignore[attr-defined]
        elif code == 2 and hasattr(e, "ctx"):  # UsageError and its kinds
            ctx = e.ctx
            where = ctx.command_path if ctx is not None else "fewshot"
            message = " ".join(e.format_message().split()).rstrip(".")
            typer.echo(f"error: {message}; see '{where} --help'", err=True)
        else:
            e.show()  # type: ignore[attr-defined]
    sys.exit(code if isinstance(code, int) else 0)
