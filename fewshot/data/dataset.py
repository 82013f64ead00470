"""The in-memory dataset every loader returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Modality = Literal["text", "image"]


@dataclass
class Dataset:
    """Items (texts, or image paths), optional string labels and stable ids.

    ``items[i]`` is what an encoder takes: a string for text, a :class:`Path` for
    images. ``ids[i]`` names the row in outputs: the file's ``id`` field, else the
    1-based line the row starts on (as error messages count lines, so ``sed -n Np``
    shows it; a Parquet row's 1-based number), or the image path relative to the
    dataset folder.

    ``labels[i]`` is one string per row, or for a multi-label dataset one list of
    strings per row (no repeats; an empty list is a row with no label): see
    :attr:`multi_label`.
    """

    items: list
    labels: list[Any] | None
    ids: list[str]
    modality: Modality
    source: str = ""
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def multi_label(self) -> bool:
        """True when the labels are lists (a dataset without rows or labels is not)."""
        return self.labels is not None and bool(self.labels) and isinstance(self.labels[0], list)

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels (byte-wise, as the protocol sorts them); for label
        lists, every label any row has."""
        if self.multi_label:
            return sorted({y for ys in self.labels or [] for y in ys})
        return sorted(set(self.labels or []))

    def subset(self, indices: Sequence[int]) -> Dataset:
        """The rows at ``indices``, in that order."""
        return Dataset(
            items=[self.items[i] for i in indices],
            labels=None if self.labels is None else [
                list(y) if isinstance(y, list) else y  # a copy: no list shared
                for y in (self.labels[i] for i in indices)
            ],
            ids=[self.ids[i] for i in indices],
            modality=self.modality,
            source=self.source,
        )

    def display(self, i: int) -> str:
        """What to print for row ``i``: the text, or the image path."""
        item = self.items[i]
        return str(item) if isinstance(item, Path) else item


def unlabelled_pool(pool: Dataset, labelled: Dataset, *, drop_labelled: bool = True) -> list:
    """The items of ``pool`` to self-train on: those not among ``labelled``'s items.

    With ``drop_labelled=False`` every item stays (an estimate of the class mix
    wants the whole population, labelled items included). A pool of the other
    modality, or one left empty, is a DataError.
    """
    from fewshot.errors import DataError

    if pool.modality != labelled.modality:
        raise DataError(f"{pool.source} holds {pool.modality} but the labelled data is "
                         f"{labelled.modality}; pass matching data")
    if not drop_labelled:
        return list(pool.items)
    seen = {str(x) for x in labelled.items}
    items = [x for x in pool.items if str(x) not in seen]
    if not items:
        raise DataError(
            f"every item of {pool.source} is also a training example, so there is nothing to "
            "pseudo-label; pass other items (fewshot train --shots N leaves the rest of the "
            "split as the pool)"
        )
    return items
