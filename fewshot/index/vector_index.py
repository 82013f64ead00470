"""A FAISS index for cosine / inner-product search that picks its structure by size."""

from __future__ import annotations

import math
import operator
from typing import Any, Literal

import numpy as np

__all__ = ["VectorIndex", "search_filled"]

Kind = Literal["auto", "flat", "ivf", "hnsw"]

# Up to this many vectors, exact search is fast enough (and exact).
FLAT_MAX = 50_000


def search_filled(
    index: Any, queries: np.ndarray, k: int, nprobe: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``index.search(queries, k)`` that fills every row an IVF search leaves short.

    An IVF index scans only ``nprobe`` lists (``nprobe``, else the index's own); a
    query whose lists hold fewer than ``k`` vectors is searched again with four times
    the lists, up to all of them, so -1 comes back only when ``k`` exceeds the index.
    """
    import faiss

    if not isinstance(index, faiss.IndexIVF):
        return index.search(queries, k)
    nprobe = min(index.nlist, nprobe or index.nprobe)

    def probe(x: np.ndarray, lists: int) -> tuple[np.ndarray, np.ndarray]:
        # faiss's wrapper takes SearchParametersIVF(nprobe=...), its stubs don't.
        params = faiss.SearchParametersIVF()
        params.nprobe = lists
        return index.search(x, k, params=params)

    scores, idx = probe(queries, nprobe)
    want = min(k, index.ntotal)
    short = np.flatnonzero((idx >= 0).sum(axis=1) < want)
    while len(short) and nprobe < index.nlist:
        nprobe = min(index.nlist, 4 * nprobe)
        s, i = probe(queries[short], nprobe)
        scores[short], idx[short] = s, i
        short = short[(i >= 0).sum(axis=1) < want]
    return scores, idx


class VectorIndex:
    """``add`` vectors, then ``search(queries, k) -> (scores, indices)`` like faiss.

    Scores are inner products (cosine similarities when vectors are L2-normalised).
    ``kind="auto"`` uses exact ``IndexFlatIP`` up to 50k vectors and an IVF index
    (``nlist ~ sqrt(n)``, trained on a sample of 64 per list, ``nprobe`` 16) above, so kNN over
    millions of vectors stays practical; ``"hnsw"`` trades memory for latency.
    Missing neighbours come back as index -1 only when ``k`` is larger than the index:
    an IVF search that finds fewer than ``k`` in its ``nprobe`` lists is repeated for
    those queries with more lists probed, up to all of them.
    """

    def __init__(
        self,
        dim: int,
        *,
        kind: Kind = "auto",
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 64,
    ) -> None:
        if kind not in ("auto", "flat", "ivf", "hnsw"):
            raise ValueError(f"unknown index kind {kind!r}; use auto, flat, ivf or hnsw")
        for name, value in (("nprobe", nprobe), ("hnsw_m", hnsw_m), ("ef_search", ef_search)):
            if int(value) < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if nlist is not None and int(nlist) < 1:
            raise ValueError(f"nlist must be at least 1 or None (automatic), got {nlist}")
        self.dim = int(dim)
        self.kind = kind
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self._index: Any = None
        self._pending: list[np.ndarray] = []

    @property
    def ntotal(self) -> int:
        return sum(len(p) for p in self._pending) + (self._index.ntotal if self._index else 0)

    def __len__(self) -> int:
        return self.ntotal

    @property
    def structure(self) -> str:
        """The concrete structure in use: flat, ivf or hnsw."""
        self._build()
        import faiss

        if isinstance(self._index, faiss.IndexHNSWFlat):
            return "hnsw"
        if isinstance(self._index, faiss.IndexIVF):
            return "ivf"
        return "flat"

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{what} must have shape (n, {self.dim}), got {x.shape}")
        return x

    def add(self, vectors: np.ndarray) -> VectorIndex:
        """Queue vectors; the index is built (and trained, for IVF) on first search."""
        vectors = self._check(vectors, "vectors")
        if self._index is not None:
            self._index.add(vectors)
        else:
            self._pending.append(vectors)
        return self

    def _build(self) -> None:
        if self._index is not None:
            return
        import faiss

        data = (
            np.concatenate(self._pending) if self._pending else np.zeros((0, self.dim), "float32")
        )
        n = len(data)
        kind = self.kind
        if kind == "auto":
            kind = "flat" if n <= FLAT_MAX else "ivf"
        index: faiss.Index
        if kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efSearch = self.ef_search
            index = hnsw
        else:
            # ~sqrt(n) lists, but at least 39 training points per list (faiss's
            # k-means minimum; fewer gives poor centroids and a warning on stderr).
            nlist = self.nlist or max(1, min(65536, int(math.sqrt(max(n, 1))), n // 39))
            if n < nlist:
                raise ValueError(
                    f"an IVF index with nlist={nlist} needs at least {nlist} vectors, got {n}"
                )
            quantizer = faiss.IndexFlatIP(self.dim)
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            sample = data if n <= 64 * nlist else data[rng.choice(n, 64 * nlist, replace=False)]
            ivf.train(sample)
            ivf.nprobe = min(self.nprobe, nlist)
            index = ivf
        if n:
            index.add(data)
        self._index = index
        self._pending = []

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, indices)``, each ``(n_queries, k)``, best first."""
        queries = self._check(queries, "queries")
        # faiss's wrapper takes a Python int only: a numpy integer (a GridSearchCV grid of
        # np.arange, a min() over array lengths) would be a SWIG overload TypeError.
        k = operator.index(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self._build()
        return search_filled(self._index, queries, k)

    def reconstruct_all(self) -> np.ndarray:
        """All stored vectors, in the order added (exact: flat, IVF and HNSW all store them).

        ``reconstruct_n`` reads an IVF index's inverted lists, so it needs no direct map
        (faiss's single-vector ``reconstruct`` would).
        """
        self._build()
        return self._index.reconstruct_n(0, self._index.ntotal)

    # -- persistence without pickle ------------------------------------------------
    def to_bytes(self) -> np.ndarray:
        """The index as a uint8 array (``faiss.serialize_index``), for safetensors/npy."""
        import faiss

        self._build()
        return faiss.serialize_index(self._index)

    @classmethod
    def from_bytes(cls, data: np.ndarray) -> VectorIndex:
        import faiss

        index = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
        kind: Kind = "flat"
        if isinstance(index, faiss.IndexHNSWFlat):
            kind = "hnsw"
        elif isinstance(index, faiss.IndexIVF):
            kind = "ivf"
        self = cls(index.d, kind=kind)
        self._index = index
        return self
