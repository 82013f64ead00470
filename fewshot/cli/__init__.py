"""The ``fewshot`` command line (typer). Heavy libraries load inside commands only."""

from __future__ import annotations

from typing import Annotated

import typer

from fewshot._version import __version__
from fewshot.cli import audit, bench, distill, embed, evaluate, predict, review, train
from fewshot.cli import select as select_cmd

__all__ = ["app", "main"]

app = typer.Typer(
    name="fewshot",
    help="Few-shot text and image classification on frozen pretrained encoders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("embed", no_args_is_help=True)(embed.embed)
app.command("train", no_args_is_help=True)(train.train)
app.command("predict", no_args_is_help=True)(predict.predict)
app.command("evaluate", no_args_is_help=True)(evaluate.evaluate)
app.command("bench", no_args_is_help=True)(bench.bench)
app.command("review", no_args_is_help=True)(review.review)
app.command("audit", no_args_is_help=True)(audit.audit)
app.command("distill", no_args_is_help=True)(distill.distill)
app.command("select", no_args_is_help=True)(select_cmd.select)
app.command("suggest", no_args_is_help=True)(select_cmd.suggest)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fewshot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
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
