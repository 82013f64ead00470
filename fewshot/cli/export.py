"""``fewshot export``: (being built)."""

from __future__ import annotations

from fewshot.cli._common import handle_errors


@handle_errors
def export() -> None:
    """(being built)"""
