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
    app()
