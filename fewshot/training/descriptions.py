"""Label descriptions: short class descriptions embedded as extra examples.

With ``label_descriptions`` (label -> one line such as ``"news about sports"``)
each description is embedded by the classifier's own encoder and added to the
head's training rows as one more example of its class. With no labelled
examples at all the descriptions are the whole support set (zero-shot); with a
few examples they pull each class towards its meaning; with many they are one
row among many and change little.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewshot.errors import DataError, UsageError

__all__ = ["check_descriptions_cover", "check_label_descriptions", "descriptions_for",
           "read_label_descriptions"]


def check_label_descriptions(descriptions: Mapping[Any, Any]) -> dict[Any, str]:
    """The mapping as ``{label: description}``; every description a non-empty string."""
    if not isinstance(descriptions, Mapping):
        raise DataError(
            f"label descriptions must map label -> description, got "
            f"{type(descriptions).__name__}; pass a dict such as {{'sports': 'news about sports'}}"
        )
    out: dict[Any, str] = {}
    for label, text in descriptions.items():
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                f"label '{label}' has no description (got {text!r}); give each label a "
                "short non-empty text"
            )
        out[label] = text.strip()
    if not out:
        raise DataError("no label descriptions given; map at least one label to a description")
    return out


def check_descriptions_cover(
    descriptions: Mapping[Any, str], classes: Sequence[Any], source: str, *,
    zero_shot: bool = False,
) -> list[Any]:
    """The classes left without a description (worth a warning).

    Descriptions of labels not in ``classes``, or a class without one when training
    on descriptions alone, are a DataError.
    """
    unknown = sorted(map(str, set(descriptions) - set(classes)))
    if unknown:
        raise DataError(
            f"label descriptions name labels not in {source}: {', '.join(unknown[:5])}; "
            f"use the data's labels ({', '.join(map(str, classes[:10]))})"
        )
    missing = sorted(set(classes) - set(descriptions))
    if missing and zero_shot:
        raise DataError("training on descriptions alone (--shots 0) needs a description of "
                        f"every class; missing: {', '.join(map(str, missing[:5]))}")
    return missing


def descriptions_for(
    descriptions: Mapping[Any, Any] | None, y: Sequence[Any], modality: str
) -> dict[Any, str]:
    """Checked ``{label: description}`` for training on labels ``y`` ({} for None).

    Keys ``"0"``, ``"1"`` become the int labels they name when the labels are
    ints: description files (and saved models) hold JSON object keys, always
    strings. Descriptions are embedded as text, so other data is a UsageError.
    """
    if descriptions is None:
        return {}
    out = check_label_descriptions(descriptions)
    if modality != "text":
        raise UsageError("label descriptions are embedded as text, so they work with text "
                         "data only; drop label_descriptions (--label-descriptions) for images")
    ints = [v for v in y if isinstance(v, int | np.integer) and not isinstance(v, bool)]
    if y and len(ints) == len(y) and all(
        isinstance(k, str) and k.strip().lstrip("+-").isdigit() for k in out
    ):
        return {int(k): text for k, text in out.items()}
    return out


def read_label_descriptions(path: str | Path) -> dict[str, str]:
    """Read ``{label: description}`` from a JSON object file (or JSONL with label/description).

    ``.jsonl`` files hold one ``{"label": ..., "description": ...}`` object per line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no label-descriptions file at {path}; check the path")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        from fewshot.data.loaders import read_records

        data: Any = {}
        for lineno, rec in read_records(path):
            if "label" not in rec or "description" not in rec:
                raise DataError(
                    f"{path}:{lineno}: expected an object with 'label' and 'description'; "
                    "fix that line"
                )
            data[str(rec["label"])] = rec["description"]
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path} is not valid JSON ({e.msg}, line {e.lineno}); write one object "
                "mapping each label to its description"
            ) from e
        except UnicodeDecodeError as e:
            raise DataError(f"{path} is not UTF-8 text ({e.reason}); re-save it as UTF-8") from e
    if not isinstance(data, dict):
        raise DataError(
            f"{path} holds a JSON {type(data).__name__}; write one object mapping each label "
            'to its description, e.g. {"sports": "news about sports"}'
        )
    return {str(k): v for k, v in check_label_descriptions(data).items()}
