"""A large index saved to a folder: built from an embeddings file in chunks, memory-mapped
when loaded, and searched like :class:`~fewshot.index.VectorIndex`.

How the structure is chosen (``kind="auto"``), for ``n`` vectors of ``d`` floats:

- ``flat`` (exact ``IndexFlatIP``) below 50,000 vectors, where exact search is fast;
- ``ivf-flat`` (``IndexIVFFlat``: exact scores inside the probed lists) while the
  vectors take at most ``max_memory`` bytes (``n * d * 4``; 4 GiB by default, about
  2.8M vectors of 384 floats), since building holds the index in memory;
- ``ivf-pq`` (``IndexIVFPQ``, 8-bit codes) above: ``m`` sub-quantizers, the largest
  divisor of ``d`` up to ``d / 2`` whose ``n * m`` bytes of codes fit in
  ``max_memory``. Compression costs recall, which the build measures and records.

IVF kinds have ``nlist ~ 4 * sqrt(n)`` lists (at most ``n / 39``, faiss's k-means
minimum of points per list), trained on a random sample of ``40 * nlist`` vectors
(at least 10,000 for PQ). The vectors are then added chunk by chunk (about 64 MB
each) straight from the file, which is never read into memory whole. Vectors and
queries are L2-normalised: scores are cosine similarities.

Recall@10 against exact search is measured during the build: 1,000 pool rows are
queries, their exact neighbours found by a brute-force pass over the same chunks
(each query's own row left out of both lists: leave-one-out). Half of them choose
the default ``nprobe``: the fewest lists reaching ``target_recall`` (0.95), or
where probing twice as many gains under 0.001; the other half report the recall
at that ``nprobe``, which the manifest records with those query rows.

The folder holds ``index.faiss`` (``faiss.write_index``), ``ids.json`` (the ids,
and labels where the pool had them) and ``index.json`` (the manifest). Loading
reads the IVF lists memory-mapped (``faiss.IO_FLAG_MMAP``; ``IO_FLAG_MMAP_IFC``
for a flat index), so a query touches only the lists it probes.

With ``faiss-gpu`` installed and a GPU present (``gpu=None``), the build trains
k-means, assigns vectors to lists and runs the exact pass for recall on the GPU;
the index written is the same CPU index, searched on the CPU.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from fewshot.errors import DataError, UsageError
from fewshot.index.pool import Pool, open_pool
from fewshot.index.vector_index import FLAT_MAX, search_filled

__all__ = [
    "FILES",
    "KINDS",
    "MAX_MEMORY",
    "SavedIndex",
    "StoredVectors",
    "build_index",
    "choose_kind",
    "choose_nlist",
    "choose_pq_m",
    "gpu_available",
    "index_info",
    "load_index",
    "search_index",
]

FORMAT, FORMAT_VERSION = "fewshot-index", 1
INDEX_FILE, IDS_FILE, MANIFEST_FILE = "index.faiss", "ids.json", "index.json"
FILES = (INDEX_FILE, IDS_FILE, MANIFEST_FILE)
KINDS = ("auto", "flat", "ivf-flat", "ivf-pq")
#: Largest IVF-Flat index (bytes of float32 vectors) ``auto`` builds; IVF-PQ above.
MAX_MEMORY = 4 * 2**30
TARGET_RECALL = 0.95
RECALL_K = 10
RECALL_QUERIES = 1000
#: Training vectors per IVF list, and faiss's k-means minimum.
TRAIN_PER_LIST, MIN_PER_LIST = 40, 39
#: PQ's 256 centroids per sub-quantizer want this many training vectors.
MIN_PQ_TRAIN = 10_000
LOO = ("leave-one-out: pool rows as queries, each query's own row left out of the exact "
       "and the approximate neighbours")


def choose_kind(n: int, dim: int, max_memory: int = MAX_MEMORY) -> str:
    """``flat`` below 50k vectors, ``ivf-flat`` while ``n * dim * 4 <= max_memory``,
    else ``ivf-pq``."""
    if n < FLAT_MAX:
        return "flat"
    return "ivf-flat" if n * dim * 4 <= max_memory else "ivf-pq"


def choose_nlist(n: int) -> int:
    """``~4 sqrt(n)`` lists, at most ``n / 39`` (k-means' minimum per list), 1 to 65536."""
    return max(1, min(65536, round(4 * math.sqrt(n)), n // MIN_PER_LIST))


def choose_pq_m(n: int, dim: int, max_memory: int = MAX_MEMORY) -> int:
    """Sub-quantizers of an IVF-PQ index: the largest divisor of ``dim`` up to ``dim / 2``
    whose codes (``n * m`` bytes) fit in ``max_memory``; 1 when none does."""
    divisors = [m for m in range(1, max(1, dim // 2) + 1) if dim % m == 0]
    fitting = [m for m in divisors if n * m <= max_memory]
    return max(fitting) if fitting else 1


def gpu_available() -> bool:
    """True when faiss was built with GPU support and sees a GPU."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _use_gpu(gpu: bool | None) -> bool:
    if gpu is None:
        return gpu_available()
    if gpu and not gpu_available():
        import faiss

        why = ("this faiss has no GPU support" if not hasattr(faiss, "StandardGpuResources")
               else "faiss sees no GPU")
        raise UsageError(
            f"--gpu: {why}; pip install 'fewshot[gpu]' then pip install --force-reinstall "
            "--no-deps faiss-gpu (faiss-cpu installs the same files), or drop --gpu"
        )
    return bool(gpu)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; rows already of length 1 (within float32 rounding, as
    encoders give them) are kept bit for bit, so results match an in-memory index's."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.abs(norms - 1.0) <= 1e-5
    if unit.all():
        return x
    return np.ascontiguousarray(np.where(unit, x, x / np.maximum(norms, 1e-12)),
                                dtype=np.float32)


def _loo_recall(exact: np.ndarray, approx: np.ndarray, rows: np.ndarray, k: int) -> float:
    """Mean share of each query's exact ``k`` neighbours found, its own row left out."""
    total = 0.0
    for e, a, r in zip(exact.tolist(), approx.tolist(), rows.tolist(), strict=True):
        truth = [j for j in e if j != r and j >= 0][:k]
        found = [j for j in a if j != r and j >= 0][:k]
        total += len(set(truth) & set(found)) / max(len(truth), 1)
    return total / max(len(rows), 1)


def _check_options(kind: str, nlist: int | None, nprobe: int | None, target_recall: float,
                   max_memory: int) -> None:
    if kind not in KINDS:
        raise UsageError(f"unknown index kind '{kind}'; choose one of {', '.join(KINDS)}")
    for name, value in (("--nlist", nlist), ("--nprobe", nprobe)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    if not 0.0 < target_recall <= 1.0:
        raise UsageError(f"--target-recall must be in (0, 1], got {target_recall}")
    if max_memory <= 0:
        raise UsageError(f"--max-memory must be positive, got {max_memory}")


class _Builder:
    """The faiss side of a build: train, add chunks (and the exact pass), tune nprobe."""

    def __init__(self, kind: str, dim: int, nlist: int, pq_m: int, gpu: bool) -> None:
        import faiss

        self.kind, self.dim, self.gpu = kind, dim, gpu
        self.res: Any = faiss.StandardGpuResources() if gpu else None
        self.index: Any
        ip = faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            self.index = faiss.IndexFlatIP(dim)
        elif kind == "ivf-flat":
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, ip)
        else:
            self.index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_m, 8, ip)
        self.assigner: Any = None

    def _to_gpu(self, index: Any) -> Any:
        import faiss

        return faiss.index_cpu_to_gpu(self.res, 0, index)

    def train(self, sample: np.ndarray) -> None:
        if self.kind == "flat":
            return
        import faiss

        if self.gpu:
            # k-means' assignment step, the cost of training, on the GPU.
            self.index.clustering_index = self._to_gpu(faiss.IndexFlatIP(self.dim))
        self.index.train(sample)
        self.index.clustering_index = None
        self.assigner = self._to_gpu(self.index.quantizer) if self.gpu else self.index.quantizer

    def add(self, x: np.ndarray) -> None:
        if self.assigner is None:
            self.index.add(x)
            return
        import faiss

        # The list of each vector from the (GPU copy of the) coarse quantizer, then added
        # to the CPU index with that assignment.
        _, assign = self.assigner.search(x, 1)
        assign = np.ascontiguousarray(assign.ravel(), dtype=np.int64)
        self.index.add_core(len(x), faiss.swig_ptr(x), None, faiss.swig_ptr(assign))

    def exact(self, queries: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        if self.gpu:
            return faiss.knn_gpu(self.res, queries, x, k, metric=faiss.METRIC_INNER_PRODUCT)
        return faiss.knn(queries, x, k, metric=faiss.METRIC_INNER_PRODUCT)


def build_index(
    pool: str | Path,
    output: str | Path,
    *,
    kind: str = "auto",
    nlist: int | None = None,
    nprobe: int | None = None,
    target_recall: float = TARGET_RECALL,
    max_memory: int = MAX_MEMORY,
    ids: str | Path | None = None,
    vector_field: str | None = None,
    id_field: str = "id",
    gpu: bool | None = None,
    seed: int = 0,
    overwrite: bool = False,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Build an index of the embeddings file ``pool`` into the folder ``output``; returns
    the manifest written (``index.json``).

    ``kind``: auto (see the module's rule), flat, ivf-flat or ivf-pq. ``nlist`` and
    ``nprobe`` override the automatic ones (an explicit ``nprobe`` is used as it is,
    not tuned). ``gpu``: None uses a GPU when faiss has one, True requires it.
    """
    import faiss

    from fewshot._io import atomic_dir, json_default
    from fewshot._progress import progress

    _check_options(kind, nlist, nprobe, target_recall, max_memory)
    output = Path(output)
    if output.exists() and not overwrite:
        raise UsageError(f"{output} already exists; choose another output or pass --force")
    began = time.perf_counter()
    src = open_pool(pool, ids=ids, vector_field=vector_field, id_field=id_field)
    n, dim = src.n, src.dim
    use_gpu = _use_gpu(gpu)
    chosen = choose_kind(n, dim, max_memory) if kind == "auto" else kind
    ivf = chosen != "flat"
    lists = pq_m = 0
    if ivf:
        if n < MIN_PER_LIST:
            raise UsageError(f"an IVF index needs at least {MIN_PER_LIST} vectors; "
                             f"{src.path} has {n}: use --kind flat")
        lists = nlist or choose_nlist(n)
        if lists > n:
            raise UsageError(f"--nlist {lists} needs at least {lists} vectors; {src.path} "
                             f"has {n}: lower --nlist")
        if nprobe is not None and nprobe > lists:
            raise UsageError(f"--nprobe {nprobe} is more than the index's {lists} lists; "
                             "lower --nprobe")
        pq_m = choose_pq_m(n, dim, max_memory) if chosen == "ivf-pq" else 0
    rng = np.random.default_rng(seed)
    builder = _Builder(chosen, dim, lists, pq_m, use_gpu)

    train_rows = 0
    if ivf:
        want = TRAIN_PER_LIST * lists
        if chosen == "ivf-pq":
            want = max(want, MIN_PQ_TRAIN)
        rows = np.sort(rng.choice(n, min(n, want), replace=False))
        train_rows = len(rows)
        with progress(f"Training {lists:,} lists on {train_rows:,} vectors", 1,
                      show_progress) as advance:
            builder.train(_unit(src.take(rows)))
            advance(1)

    # Queries for recall: pool rows, half to choose nprobe and half to report.
    k = min(RECALL_K, n - 1)
    q_rows = np.sort(rng.choice(n, min(n, RECALL_QUERIES), replace=False)) if ivf and k else (
        np.zeros(0, dtype=np.int64))
    queries = _unit(src.take(q_rows)) if len(q_rows) else np.zeros((0, dim), np.float32)
    heap = faiss.ResultHeap(len(q_rows), k + 1, keep_max=True) if len(q_rows) else None

    with progress(f"Indexing {n:,} vectors ({chosen})", n, show_progress) as advance:
        for start, block in src.chunks():
            x = _unit(block)
            builder.add(x)
            if heap is not None:
                d, i = builder.exact(queries, x, min(k + 1, len(x)))
                heap.add_result(d, np.where(i >= 0, i + start, -1))
            advance(len(x))
    index = builder.index
    if index.ntotal != n:
        raise DataError(f"{src.path} gave {index.ntotal} vectors where its header says {n}; "
                        "the file is damaged or still being written: write it again")

    recall: dict[str, Any]
    default_nprobe = None
    if heap is None:
        recall = {"k": RECALL_K, "value": 1.0, "exact": True}
    else:
        heap.finalize()
        order = rng.permutation(len(q_rows))
        half = len(order) // 2
        tune, report = np.sort(order[:half]), np.sort(order[half:])

        def measure(which: np.ndarray, probes: int) -> float:
            _, approx = search_filled(index, queries[which], k + 1, probes)
            return _loo_recall(heap.I[which], approx, q_rows[which], k)

        default_nprobe = nprobe or _tune_nprobe(measure, tune, lists, target_recall)
        recall = {
            "k": k, "value": round(measure(report, default_nprobe), 6),
            "nprobe": default_nprobe, "queries": len(report), "target": target_recall,
            "method": LOO, "rows": q_rows[report].tolist(),
        }
        index.nprobe = default_nprobe

    seconds = time.perf_counter() - began
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": chosen,
        "dim": dim,
        "metric": "cosine",
        "count": n,
        "nlist": lists or None,
        "nprobe": default_nprobe,
        "pq": {"m": pq_m, "nbits": 8} if chosen == "ivf-pq" else None,
        "index_file": INDEX_FILE,
        "ids_file": IDS_FILE,
        "labels": src.labels is not None,
        "encoder": dict(src.meta) or None,
        "recall": recall,
        "build": {"source": str(src.path), "seconds": round(seconds, 3),
                  "train_rows": train_rows, "gpu": use_gpu, "max_memory": max_memory,
                  "seed": seed},
    }
    with atomic_dir(output, overwrite=overwrite, replaceable=FILES) as tmp:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        with open(tmp / IDS_FILE, "w", encoding="utf-8") as f:
            json.dump({"ids": src.ids, "labels": src.labels}, f, default=json_default)
        with open(tmp / MANIFEST_FILE, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, default=json_default)
            f.write("\n")
    return manifest


def _tune_nprobe(measure: Any, tune: np.ndarray, nlist: int, target: float) -> int:
    """The fewest lists (1, 2, 4, ...) whose recall on ``tune`` reaches ``target``, or
    where doubling them gains under 0.001."""
    previous: tuple[int, float] | None = None
    probes = 1
    while True:
        probes = min(probes, nlist)
        value = measure(tune, probes)
        if value >= target:
            return probes
        if previous is not None and value - previous[1] < 0.001:
            return previous[0]
        if probes == nlist:
            return probes
        previous = (probes, value)
        probes *= 2


class SavedIndex:
    """A saved index folder, loaded for search: ``search(queries, k) -> (scores, rows)``
    as :class:`~fewshot.index.VectorIndex` gives, with the pool's ``ids`` (and
    ``labels``) for those rows.

    Queries are L2-normalised and scores are cosine similarities. ``nprobe`` (IVF
    kinds) starts at the manifest's, the one the build measured recall at.
    """

    def __init__(self, folder: Path, index: Any, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest
        self._index = index
        self.nprobe: int | None = manifest.get("nprobe")
        self._ids: list[Any] | None = None
        self._labels: list[Any] | None = None
        self._direct_map = False

    @classmethod
    def load(cls, folder: str | Path, *, mmap: bool = True) -> SavedIndex:
        """Open ``folder``; with ``mmap`` (the default) the vectors stay on disk."""
        import faiss

        folder = Path(folder)
        manifest = _read_manifest(folder)
        path = folder / manifest.get("index_file", INDEX_FILE)
        if not path.is_file():
            raise DataError(f"{folder} has no {path.name}; build the index again")
        flag = 0
        if mmap:
            flag = faiss.IO_FLAG_MMAP_IFC if manifest["kind"] == "flat" else faiss.IO_FLAG_MMAP
        try:
            index = faiss.read_index(str(path), flag)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable"
            raise DataError(f"cannot read {path} ({first}); build the index again") from None
        if index.d != manifest["dim"] or index.ntotal != manifest["count"]:
            raise DataError(
                f"{path} holds {index.ntotal} vectors of {index.d} floats but {folder.name}'s "
                f"manifest says {manifest['count']} of {manifest['dim']}; build the index again"
            )
        return cls(folder, index, manifest)

    # -- what it holds --------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    @property
    def kind(self) -> str:
        """flat, ivf-flat or ivf-pq."""
        return str(self.manifest["kind"])

    @property
    def structure(self) -> str:
        """flat or ivf, as :attr:`VectorIndex.structure` names them."""
        return "flat" if self.kind == "flat" else "ivf"

    def _load_ids(self) -> None:
        path = self.folder / self.manifest.get("ids_file", IDS_FILE)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {path} ({e}); build the index again") from None
        ids = data.get("ids") if isinstance(data, dict) else None
        if not isinstance(ids, list) or len(ids) != self.ntotal:
            raise DataError(f"{path} does not hold the index's {self.ntotal} ids; build the "
                            "index again")
        self._ids, self._labels = ids, data.get("labels")

    @property
    def ids(self) -> list[Any]:
        """The pool's id of each row."""
        if self._ids is None:
            self._load_ids()
        assert self._ids is not None
        return self._ids

    @property
    def labels(self) -> list[Any] | None:
        """The pool's label of each row, when the pool had labels."""
        if self._ids is None:
            self._load_ids()
        return self._labels

    def check_ids(self, ids: list[Any], name: str = "the pool") -> None:
        """A DataError unless ``ids`` are this index's rows, in order (compared as text:
        Parquet stores ids as strings)."""
        mine = self.ids
        if len(ids) != len(mine):
            raise DataError(f"the index {self.folder} holds {len(mine)} vectors but {name} has "
                            f"{len(ids)} items; build the index from {name}'s embeddings")
        for row, (a, b) in enumerate(zip(mine, ids, strict=True)):
            if str(a) != str(b):
                raise DataError(f"the index {self.folder} row {row} is id {a!r} but {name}'s "
                                f"item {row} is {b!r}; build the index from {name}'s "
                                "embeddings, in its order")

    def check_encoder(self, encoder: Any) -> None:
        """A UsageError when the manifest names another encoder than ``encoder`` (by its
        ``id``); nothing when the pool file did not say which encoder made it."""
        made_by = self.manifest.get("encoder") or {}
        if made_by.get("encoder_id") and made_by["encoder_id"] != getattr(encoder, "id", None):
            raise UsageError(
                f"the index {self.folder} was embedded with {made_by.get('encoder')}, not "
                f"{getattr(encoder, 'name', encoder)}; pass that encoder, or build the index "
                "from this encoder's embeddings"
            )

    # -- search ---------------------------------------------------------------------
    def _queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries)
        if q.ndim != 2 or q.shape[1] != self.dim:
            encoder = (self.manifest.get("encoder") or {}).get("encoder")
            by = f" ({encoder})" if encoder else ""
            raise UsageError(
                f"queries must have shape (n, {self.dim}), got {q.shape}; embed them with "
                f"the encoder the pool was embedded with{by}"
            )
        return _unit(q)

    def search(
        self, queries: np.ndarray, k: int, *, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, rows)``, each ``(n_queries, k)``, best first; a row is an
        index into :attr:`ids`, -1 only when ``k`` exceeds the index."""
        import operator

        q = self._queries(queries)
        k = operator.index(k)
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        if nprobe is not None and nprobe < 1:
            raise UsageError(f"nprobe must be at least 1, got {nprobe}")
        return search_filled(self._index, q, k, nprobe or self.nprobe)

    def search_ids(
        self, queries: np.ndarray, k: int, *, nprobe: int | None = None
    ) -> list[list[tuple[Any, float]]]:
        """For each query, its ``k`` nearest ``(id, score)``, best first."""
        scores, rows = self.search(queries, k, nprobe=nprobe)
        ids = self.ids
        return [[(ids[j], float(s)) for j, s in zip(r, sc, strict=True) if j >= 0]
                for r, sc in zip(rows.tolist(), scores.tolist(), strict=True)]

    @property
    def vectors(self) -> StoredVectors:
        """The stored vectors as a read-only ``(n, dim)`` array-like whose rows are read
        from the index when indexed (``index.vectors[rows]``), never all at once."""
        return StoredVectors(self)

    def reconstruct(self, rows: np.ndarray) -> np.ndarray:
        """The stored (unit) vectors of ``rows``: exact for flat and ivf-flat, the PQ
        approximation for ivf-pq."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.ntotal):
            raise UsageError(f"rows must be in 0 to {self.ntotal - 1}")
        if self.kind != "flat" and not self._direct_map:
            self._index.make_direct_map()  # row -> (list, offset), kept in memory
            self._direct_map = True
        return self._index.reconstruct_batch(rows)


class StoredVectors:
    """A saved index's vectors behind array indexing: ``v[rows]``, ``v[i]``, ``v[a:b]``,
    ``v.shape``; each access reads (reconstructs) just those rows."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, index: SavedIndex) -> None:
        self._index = index
        self.shape = (len(index), index.dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, slice):
            rows = np.arange(self.shape[0])[rows]
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        picked = self._index.reconstruct(rows.reshape(-1))
        return picked[0] if rows.ndim == 0 else picked.reshape(*rows.shape, self.shape[1])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise DataError(f"{folder} is not an index folder; build one with fewshot index build")
    if not path.is_file():
        raise DataError(f"{folder} has no {MANIFEST_FILE}: not an index folder; build one "
                        "with fewshot index build")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} ({e}); build the index again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path} is not a fewshot index manifest; build the index again")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(f"{folder} is an index of format version {version}, newer than this "
                        f"fewshot reads ({FORMAT_VERSION}); upgrade fewshot")
    if manifest.get("kind") not in KINDS[1:]:
        raise DataError(f"{path} names an unknown index kind {manifest.get('kind')!r}; "
                        "build the index again")
    return manifest


def load_index(folder: str | Path, *, mmap: bool = True) -> SavedIndex:
    """:meth:`SavedIndex.load`."""
    return SavedIndex.load(folder, mmap=mmap)


def index_info(folder: str | Path) -> dict[str, Any]:
    """The manifest of ``folder`` (without recall's query rows) and its files' sizes."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    info = {**manifest, "recall": {k: v for k, v in (manifest.get("recall") or {}).items()
                                   if k != "rows"}}
    info["bytes"] = {name: (folder / name).stat().st_size for name in FILES
                     if (folder / name).is_file()}
    return info


def search_index(
    folder: str | Path, queries: str | Path, k: int = 10, *, nprobe: int | None = None,
    ids: str | Path | None = None, vector_field: str | None = None, id_field: str = "id",
) -> list[dict[str, Any]]:
    """Search the index in ``folder`` with every vector of the embeddings file
    ``queries``: one row per query, ``{"id", "neighbours": [{"id", "score"(, "label")}]}``.

    Queries without ids are named by their row number.
    """
    index = SavedIndex.load(folder)
    src: Pool = open_pool(queries, ids=ids, vector_field=vector_field, id_field=id_field,
                          require_ids=False)
    pool_ids, labels = index.ids, index.labels
    out: list[dict[str, Any]] = []
    for start, block in src.chunks():
        scores, rows = index.search(block, k, nprobe=nprobe)
        for q, (r, s) in enumerate(zip(rows.tolist(), scores.tolist(), strict=True)):
            neighbours = []
            for j, score in zip(r, s, strict=True):
                if j < 0:
                    continue
                hit: dict[str, Any] = {"id": pool_ids[j], "score": round(score, 6)}
                if labels is not None:
                    hit["label"] = labels[j]
                neighbours.append(hit)
            out.append({"id": src.ids[start + q], "neighbours": neighbours})
    return out
