"""``fewshot serve``: (being built)."""

from __future__ import annotations

from fewshot.cli._common import handle_errors


@handle_errors
def serve() -> None:
    """(being built)"""
