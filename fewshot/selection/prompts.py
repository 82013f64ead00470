"""Render a prompt per query from a user template (Jinja2, sandboxed).

A template sees ``query`` (the query text or image path) and ``examples``, a
list in prompt order whose items have ``text`` (or ``path``), ``label``,
``labels``, ``score`` and ``index``. ``labels`` is the example's label list
(``[label]`` for a single-label pool); for a multi-label pool ``label`` is that
list joined by ``", "`` (``""`` for an item with no label), so one template serves
both::

    Classify the support ticket.
    {% for ex in examples %}Ticket: {{ ex.text }}
    Label: {{ ex.label }}

    {% endfor %}Ticket: {{ query }}
    Label:

Any other name is an error when the template is loaded, not a blank in the
prompt. Templates render in Jinja2's sandbox, so a template file cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fewshot.errors import DataError, UsageError

__all__ = ["PromptTemplate"]

FIELDS = "query, examples (each with text or path, label, labels, score, index)"


class PromptTemplate:
    """A checked Jinja2 template: ``render(query, examples) -> str``."""

    def __init__(self, source: str, *, modality: str = "text") -> None:
        import jinja2
        from jinja2.sandbox import SandboxedEnvironment

        self.source = source
        self.modality = modality
        env = SandboxedEnvironment(
            undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
        )
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise UsageError(
                f"template syntax error on line {e.lineno}: {e.message}; fix the template"
            ) from e
        # Render once with a stand-in example so an unknown field fails now.
        self.render("query", [{"index": 0, "label": "label", "score": 1.0,
                               "item": "example"}])

    @classmethod
    def from_file(cls, path: str | Path, *, modality: str = "text") -> PromptTemplate:
        path = Path(path)
        try:
            return cls(path.read_text(encoding="utf-8"), modality=modality)
        except FileNotFoundError:
            raise DataError(f"no template file at {path}; check the path") from None
        except UnicodeDecodeError:
            raise DataError(f"template {path} is not UTF-8 text; save it as UTF-8") from None

    def render(self, query: Any, examples: list[dict[str, Any]]) -> str:
        import jinja2

        key = "text" if self.modality == "text" else "path"
        needed = ("index", "label", "score", "item")
        for i, e in enumerate(examples):
            missing = [k for k in needed if k not in e]
            if missing:
                raise UsageError(
                    f"example {i} has no {', '.join(missing)}; give each example the keys "
                    f"{', '.join(needed)} (as ExampleSelector's picks have)"
                )
        exs = [
            {"index": e["index"], "label": _label_text(e["label"]),
             "labels": list(e["label"]) if isinstance(e["label"], list | tuple) else [e["label"]],
             "score": e["score"], key: str(e["item"])}
            for e in examples
        ]
        try:
            return self._template.render(query=str(query), examples=exs)
        except jinja2.UndefinedError as e:
            raise UsageError(
                f"template uses an unknown field ({e.message}); available: {FIELDS}"
            ) from e
        except jinja2.exceptions.SecurityError as e:
            raise UsageError(f"template does something unsafe ({e}); remove it") from e


def _label_text(label: Any) -> Any:
    """What ``{{ ex.label }}`` shows: the label, or a label list joined by ", "."""
    return ", ".join(map(str, label)) if isinstance(label, list | tuple) else label
