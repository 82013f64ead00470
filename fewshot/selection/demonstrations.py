"""Pick labelled examples to show an LLM for each query (in-context demonstrations).

Strategies (Liu et al. 2022, "What makes good in-context examples for GPT-3?"
showed nearest neighbours beat random demonstrations by large margins):

- ``nearest``: the ``k`` pool items most cosine-similar to the query;
- ``mmr``: maximal marginal relevance, trading similarity to the query against
  similarity to examples already chosen (``mmr_lambda`` 1.0 = nearest);
- ``balanced``: the nearest examples of each label, so every label (or the
  ``labels_per_query`` labels closest to the query) is shown;
- ``random``: a seeded uniform draw, the baseline.

A multi-label pool (a list of labels per item; an empty list is an item with no
label) works with every strategy, and each demonstration carries its item's label
list. For ``balanced`` an item counts for each of its labels and is shown once:
a label's turn takes its nearest example not already shown; items with no label
are shown only to fill up ``k``.

Examples come back in prompt order: by default the most similar last, right
before the query (``order="ascending"``), as KATE found best.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from fewshot.encoders.base import item_list
from fewshot.errors import DataError, UsageError
from fewshot.heads.base import l2n

if TYPE_CHECKING:
    from fewshot.index import VectorIndex

__all__ = ["STRATEGIES", "Demonstration", "ExampleSelector"]

STRATEGIES = ("nearest", "mmr", "balanced", "random")
Strategy = Literal["nearest", "mmr", "balanced", "random"]


class Demonstration(NamedTuple):
    """One selected pool example: its pool index, the item, its label (a list of labels
    for a multi-label pool), its cosine."""

    # Shadows tuple.index (mypy: assignment); renaming it would break the public API.
    index: int  # type: ignore[assignment]
    item: Any
    label: Any
    score: float


class ExampleSelector:
    """Select ``k`` demonstrations per query from a labelled pool.

    >>> sel = ExampleSelector("all-MiniLM-L6-v2", k=4, strategy="mmr")  # doctest: +SKIP
    >>> sel.fit(pool_texts, pool_labels).select(["where is my parcel?"])  # doctest: +SKIP
    [[Demonstration(index=12, item='...', label='shipping', score=0.71), ...]]

    The pool is embedded once through the embedding cache and searched through a
    :class:`~fewshot.index.VectorIndex` (exact up to 50k items, IVF above), so
    pools of millions stay practical.
    """

    def __init__(
        self,
        encoder: Any = None,
        *,
        k: int = 4,
        strategy: Strategy = "nearest",
        mmr_lambda: float = 0.5,
        fetch_k: int | None = None,
        labels_per_query: int | None = None,
        order: Literal["ascending", "descending"] = "ascending",
        seed: int = 0,
        cache: Any = True,
        batch_size: int = 32,
        device: str | None = None,
        show_progress: bool | None = None,
    ) -> None:
        self.encoder = encoder
        self.k = k
        self.strategy = strategy
        self.mmr_lambda = mmr_lambda
        self.fetch_k = fetch_k
        self.labels_per_query = labels_per_query
        self.order = order
        self.seed = seed
        self.cache = cache
        self.batch_size = batch_size
        self.device = device
        self.show_progress = show_progress

    # -- fitting ----------------------------------------------------------------------
    def _check_params(self, k: int) -> None:
        if self.strategy not in STRATEGIES:
            raise UsageError(
                f"unknown strategy '{self.strategy}'; choose one of {', '.join(STRATEGIES)}"
            )
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise UsageError(f"mmr_lambda must be in [0, 1], got {self.mmr_lambda}")
        if self.order not in ("ascending", "descending"):
            raise UsageError(f"order must be 'ascending' or 'descending', got '{self.order}'")

    def _embed(self, items: Sequence[Any]) -> np.ndarray:
        from fewshot.cache import as_cache, embed

        return embed(self.encoder_, list(items), as_cache(self.cache),
                     show_progress=self.show_progress)

    def fit(
        self,
        items: Sequence[Any],
        labels: Sequence[Any] | None = None,
        *,
        embeddings: np.ndarray | None = None,
        index: Any = None,
    ) -> ExampleSelector:
        """Embed and index the pool; ``labels`` (one per item, or a list of labels per
        item) are needed for ``balanced``.

        ``embeddings`` (one row per item, from the same encoder) skips embedding.
        ``index`` (a :class:`~fewshot.index.SavedIndex` built from the pool's embeddings,
        one row per item in pool order) skips embedding and indexing: searches run on
        the memory-mapped index, and mmr, balanced and random read the rows they need.
        """
        from fewshot.encoders import Encoder, get_encoder, guess_modality
        from fewshot.index import VectorIndex

        self._check_params(self.k)
        items = item_list(items, "fit()")
        if not items:
            raise DataError("the pool is empty; give at least k labelled examples")
        if labels is not None and len(labels) != len(items):
            raise DataError(f"got {len(items)} pool items but {len(labels)} labels")
        if labels is not None:
            labels = _check_pool_labels(labels)
        if self.strategy == "balanced" and labels is None:
            raise UsageError("strategy 'balanced' needs pool labels; give a labelled pool")
        if embeddings is not None and self.encoder is None:
            self.encoder_ = None  # select_embeddings() only
        else:
            modality = guess_modality(items)
            self.encoder_ = (
                get_encoder(self.encoder, modality) if isinstance(self.encoder, Encoder)
                else get_encoder(self.encoder, modality, device=self.device,
                                 batch_size=self.batch_size, show_progress=self.show_progress)
            )
        self.items_ = items
        self.labels_ = None if labels is None else list(labels)
        if index is not None:
            if embeddings is not None:
                raise UsageError("give the pool's embeddings or its index, not both")
            if len(index) != len(items):
                raise DataError(f"the index holds {len(index)} vectors for {len(items)} pool "
                                "items; build it from this pool's embeddings")
            if self.encoder_ is not None:
                index.check_encoder(self.encoder_)
            self.embeddings_ = index.vectors  # rows read from the index when needed
            self.index_ = index
        elif embeddings is not None:
            if len(embeddings) != len(items):
                raise DataError(f"got {len(embeddings)} embeddings for {len(items)} items")
            # Cosine scores and MMR need unit vectors; encoders' own output already is.
            self.embeddings_ = l2n(np.ascontiguousarray(embeddings, dtype=np.float32))
        else:
            self.embeddings_ = self._embed(items)
        if index is None:
            self.index_ = VectorIndex(self.embeddings_.shape[1]).add(self.embeddings_)
        if self.labels_ is not None:
            self.multi_label_ = isinstance(self.labels_[0], list)
            if self.multi_label_:
                # Each label's members, in pool order; an item may be in several.
                self.classes_ = np.asarray(sorted({str(y) for ys in self.labels_ for y in ys}))
                where = {c: i for i, c in enumerate(self.classes_.tolist())}
                groups: list[list[int]] = [[] for _ in self.classes_]
                for i, ys in enumerate(self.labels_):
                    for y in ys:
                        groups[where[str(y)]].append(i)
                self._members = [np.asarray(g, dtype=np.int64) for g in groups]
            else:
                self.classes_, self.label_ids_ = np.unique(
                    np.asarray(self.labels_, dtype=object).astype(str), return_inverse=True
                )
                self._members = [np.flatnonzero(self.label_ids_ == c)
                                 for c in range(len(self.classes_))]
            self._class_index: dict[int, VectorIndex] = {}
            if self.strategy == "balanced" and not len(self.classes_):
                raise DataError("no pool item has a label, so 'balanced' has no label to "
                                "show; give labelled items or choose another strategy")
        return self

    # -- selection --------------------------------------------------------------------
    def select(
        self, queries: Sequence[Any], k: int | None = None
    ) -> list[list[Demonstration]]:
        """For each query, ``k`` demonstrations in prompt order."""
        if not hasattr(self, "index_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("call fit(pool_items, pool_labels) before select()")
        if self.encoder_ is None:
            raise UsageError(
                "this selector was fitted on embeddings without an encoder; pass an encoder "
                "or call select_embeddings()"
            )
        queries = item_list(queries, "select()")
        q = self._embed(queries) if queries else np.zeros((0, self.embeddings_.shape[1]))
        return self.select_embeddings(q, k)

    def select_embeddings(
        self, query_embeddings: np.ndarray, k: int | None = None
    ) -> list[list[Demonstration]]:
        """Like :meth:`select`, for queries already embedded with the same encoder."""
        k = self.k if k is None else k
        self._check_params(k)
        n = len(self.items_)
        if k > n:
            raise UsageError(f"k={k} is larger than the pool ({n} items); lower k")
        q = np.ascontiguousarray(query_embeddings, dtype=np.float32)
        if q.ndim in (1, 2) and len(q) == 0:
            return []
        dim = self.embeddings_.shape[1]
        if q.ndim != 2 or q.shape[1] != dim:
            raise UsageError(
                f"query embeddings must have shape (n_queries, {dim}), got {q.shape}; "
                "for one query pass a 2-D array, e.g. emb[None, :]"
            )
        q = l2n(q)
        if self.strategy == "nearest":
            scores, idx = self.index_.search(q, k)
            picks = [list(zip(i.tolist(), s.tolist(), strict=True)) for s, i in zip(scores, idx,
                                                                                   strict=True)]
        elif self.strategy == "mmr":
            picks = self._mmr(q, k)
        elif self.strategy == "balanced":
            picks = self._balanced(q, k)
        else:
            picks = self._random(q, k)
        out = []
        for row in picks:
            row = sorted(row, key=lambda p: p[1], reverse=self.order == "descending")
            out.append([
                Demonstration(
                    int(i), self.items_[i], None if self.labels_ is None else self.labels_[i],
                    float(s),
                )
                for i, s in row
            ])
        return out

    def _mmr(self, q: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        fetch = min(len(self.items_), max(k, self.fetch_k or max(4 * k, 20)))
        scores, idx = self.index_.search(q, fetch)
        lam = self.mmr_lambda
        out = []
        for s, i in zip(scores, idx, strict=True):
            valid = i >= 0
            cand, rel = i[valid], s[valid]
            vecs = self.embeddings_[cand]
            chosen: list[int] = []
            # Highest similarity to anything already chosen, per candidate.
            redundancy = np.full(len(cand), -np.inf, dtype=np.float32)
            for _ in range(min(k, len(cand))):
                score = lam * rel - (1 - lam) * np.where(np.isinf(redundancy), 0, redundancy)
                score[chosen] = -np.inf
                j = int(np.argmax(score))
                chosen.append(j)
                redundancy = np.maximum(redundancy, vecs @ vecs[j])
            out.append([(int(cand[j]), float(rel[j])) for j in chosen])
        return out

    def _balanced(self, q: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        from fewshot.index import VectorIndex

        n_classes = len(self.classes_)
        m = min(self.labels_per_query or n_classes, n_classes, k)
        per = -(-k // m)  # ceil: turns per label
        # One label's members may be shown for another label first (multi-label): a
        # turn skips those, so fetch deeper.
        depth = k if self.multi_label_ else per
        best = np.empty((len(q), n_classes), dtype=np.float32)
        found: list[tuple[np.ndarray, np.ndarray]] = []
        for c in range(n_classes):
            members = self._members[c]
            if c not in self._class_index:
                self._class_index[c] = VectorIndex(self.embeddings_.shape[1]).add(
                    self.embeddings_[members]
                )
            s, i = self._class_index[c].search(q, min(depth, len(members)))
            found.append((s, np.where(i >= 0, members[np.maximum(i, 0)], -1)))
            best[:, c] = s[:, 0]
        out = []
        for row in range(len(q)):
            labels = np.argsort(-best[row], kind="stable")[:m]
            picks: list[tuple[int, float]] = []
            shown: set[int] = set()
            at = dict.fromkeys(labels.tolist(), 0)  # each label's next candidate
            # Round-robin over the m closest labels: each label's nearest not yet shown.
            for _ in range(per):
                for c in labels.tolist():
                    s, i = found[c]
                    while at[c] < i.shape[1] and (i[row, at[c]] < 0
                                                  or int(i[row, at[c]]) in shown):
                        at[c] += 1
                    if at[c] < i.shape[1] and len(picks) < k:
                        picks.append((int(i[row, at[c]]), float(s[row, at[c]])))
                        shown.add(picks[-1][0])
                        at[c] += 1
            if len(picks) < k:  # small classes: fill with the nearest not yet taken,
                picks += self._fill(q[row], picks, k, labels)  # of the shown labels first
            out.append(picks)
        return out

    def _fill(
        self, q: np.ndarray, picks: list[tuple[int, float]], k: int, labels: np.ndarray
    ) -> list[tuple[int, float]]:
        """Up to ``k - len(picks)`` more, nearest first: of ``labels`` while they have
        items left, then of any label (only when those labels hold fewer than ``k``)."""
        need = k - len(picks)
        taken = {p[0] for p in picks}
        cand: list[tuple[int, float]] = []
        for c in labels:
            members = self._members[c]
            s, i = self._class_index[c].search(q[None, :], min(k, len(members)))
            cand += [(int(members[j]), float(sc)) for j, sc in zip(i[0], s[0], strict=True)
                     if j >= 0 and int(members[j]) not in taken]
        once: dict[int, float] = {}  # an item of several shown labels is a candidate once
        for item, score in cand:
            once.setdefault(item, score)
        cand = sorted(once.items(), key=lambda c: -c[1])
        if len(cand) < need:  # the shown labels are used up: any label, nearest first
            taken |= {c[0] for c in cand}
            s, i = self.index_.search(q[None, :], min(len(self.items_), k + len(taken)))
            cand += [(int(j), float(sc)) for j, sc in zip(i[0], s[0], strict=True)
                     if j >= 0 and int(j) not in taken]
        return cand[:need]

    def _random(self, q: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        n = len(self.items_)
        out = []
        for row in range(len(q)):
            rng = np.random.default_rng([self.seed, row])
            idx = rng.choice(n, size=k, replace=False)
            sims = self.embeddings_[idx] @ q[row]
            out.append(list(zip(idx.tolist(), sims.tolist(), strict=True)))
        return out


def _check_pool_labels(labels: Sequence[Any]) -> list[Any]:
    """The pool's labels as a list: one label per item, or a list of labels for every
    item (multi-label; tuples and sets become sorted lists). A mix is a DataError."""
    out = list(labels)
    lists = [isinstance(y, list | tuple | set | frozenset) for y in out]
    odd = next((i for i, is_list in enumerate(lists) if is_list != lists[0]), None)
    if odd is not None:
        raise DataError(
            f"pool label {odd} is {out[odd]!r} but label 0 is {out[0]!r}; give one label per "
            "item, or a list of labels for every item (multi-label)"
        )
    if out and lists[0]:
        return [list(y) if isinstance(y, list | tuple) else sorted(y) for y in out]
    return out
