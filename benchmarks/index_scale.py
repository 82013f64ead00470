"""A 1M x 384 pool through ``fewshot index build``: build time, peak memory, index size,
query latency (1 and 64-query batches) and recall@10 against exact search.

    python benchmarks/index_scale.py prepare [--n 1000000] [--work /tmp/fewshot-index-scale]
    flock /tmp/fewshot-bench.lock python benchmarks/index_scale.py run

The pool: about 15k real texts (go_emotions test, trec train and test,
amazon_counterfactual_en train from ../shared/data), embedded with all-MiniLM-L6-v2
(through the embedding cache), are the centres; each pool vector is one of them
(drawn uniformly) plus Gaussian noise with the real embeddings' own covariance, scaled
by --noise (1.0: a mean cosine of 0.72 to its centre), then L2-normalised. So the pool
has the real embeddings' anisotropy and their clusters of near-paraphrases, where a
uniform random pool would have no neighbourhoods at all. 1,000 held-out queries are
drawn the same way and not added to the pool.

``prepare`` writes the pool (pool.npy, pool.ids.json) and the held-out queries; it is
not timed. ``run`` builds the index with the CLI in a child process (wall time and the
child's peak RSS), then loads it memory-mapped and measures, in this process, the
latency of 1-query and 64-query searches at the default nprobe, recall@10 of the
held-out queries against exact search (a brute-force pass over the pool, also timed as
the reference), and recall at other nprobe values. Results go to
benchmarks/results/index_scale.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FEWSHOT_SHARED", ROOT.parent / "shared"))
#: The texts whose embeddings are the pool's centres: Reddit comments, questions and
#: product reviews.
SPLITS = (("go_emotions", "test"), ("trec", "train"), ("trec", "test"),
          ("amazon_counterfactual_en", "train"))
RESULTS = ROOT / "benchmarks/results/index_scale.json"
K = 10


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def real_embeddings() -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of the distinct texts of :data:`SPLITS`."""
    from fewshot.cache import EmbeddingCache, embed
    from fewshot.encoders import get_encoder

    texts: list[str] = []
    for name, split in SPLITS:
        with open(SHARED / "data" / name / f"{split}.jsonl", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    texts = sorted(set(texts))
    encoder = get_encoder("all-MiniLM-L6-v2", "text", device="cpu")
    return embed(encoder, texts, EmbeddingCache())


def prepare(work: Path, n: int, noise: float, seed: int) -> None:
    centres = real_embeddings()
    rng = np.random.default_rng(seed)
    cov = np.cov(centres, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    root = (vecs * np.sqrt(np.clip(vals, 0, None))).astype(np.float32)  # noise = g @ root.T

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        base = centres[rng.integers(0, len(centres), m)]
        noisy = base + noise * rng.standard_normal((m, centres.shape[1]),
                                                   dtype=np.float32) @ root.T
        return _unit(noisy), base

    work.mkdir(parents=True, exist_ok=True)
    pool = np.lib.format.open_memmap(work / "pool.npy", mode="w+", dtype=np.float32,
                                     shape=(n, centres.shape[1]))
    step = 100_000
    for start in range(0, n, step):
        pool[start : start + step] = draw(min(step, n - start))[0]
    pool.flush()
    del pool
    with open(work / "pool.ids.json", "w", encoding="utf-8") as f:
        json.dump({"ids": [f"p{i}" for i in range(n)]}, f)
    queries, base = draw(1000)
    np.save(work / "queries.npy", queries)
    meta = {"n": n, "dim": int(centres.shape[1]), "centres": len(centres), "noise": noise,
            "seed": seed,
            "mean_cosine_to_centre": round(float(np.mean(np.sum(queries * base, axis=1))), 4)}
    (work / "pool.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))


def exact_search(pool: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Brute-force top-k rows of ``queries`` over the memory-mapped pool, by chunks."""
    import faiss

    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    step = 65536
    for start in range(0, len(pool), step):
        x = np.ascontiguousarray(pool[start : start + step])
        d, i = faiss.knn(queries, x, k, metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(d, i + start)
    heap.finalize()
    return heap.I


def recall(exact: np.ndarray, approx: np.ndarray) -> float:
    return float(np.mean([len(set(e) & set(a)) / len(e)
                          for e, a in zip(exact.tolist(), approx.tolist(), strict=True)]))


def run(work: Path) -> None:
    from fewshot.index import load_index

    meta = json.loads((work / "pool.json").read_text())
    out = work / "index"
    shutil.rmtree(out, ignore_errors=True)
    # The console script installed beside this Python.
    command = [str(Path(sys.executable).with_name("fewshot")), "index", "build",
               str(work / "pool.npy"), "--output", str(out)]
    began = time.perf_counter()
    subprocess.run(command, check=True)
    build_s = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    manifest = json.loads((out / "index.json").read_text())
    size_mb = (out / "index.faiss").stat().st_size / 2**20

    index = load_index(out)
    queries = np.load(work / "queries.npy")
    index.search(queries[:64], K)  # warm the pages of the lists the queries touch
    one = []
    for q in queries[:300]:
        t = time.perf_counter()
        index.search(q[None, :], K)
        one.append(time.perf_counter() - t)
    batch = []
    for start in range(0, 640, 64):
        t = time.perf_counter()
        index.search(queries[start : start + 64], K)
        batch.append(time.perf_counter() - t)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    pool = np.load(work / "pool.npy", mmap_mode="r")
    t = time.perf_counter()
    exact = exact_search(pool, queries, K)
    exact_s = time.perf_counter() - t
    curve = {}
    for probes in sorted({1, 4, 8, 16, 32, 64, 128, manifest["nprobe"]}):
        _, approx = index.search(queries, K, nprobe=probes)
        curve[probes] = round(recall(exact, approx), 4)
    result = {
        "pool": meta,
        "command": " ".join(["fewshot", *command[1:]]),
        "kind": manifest["kind"], "nlist": manifest["nlist"], "nprobe": manifest["nprobe"],
        "build_s": round(build_s, 1), "build_peak_rss_mb": round(peak_mb),
        "pool_file_mb": round((work / "pool.npy").stat().st_size / 2**20),
        "index_file_mb": round(size_mb),
        "recall_at_10_build_loo": manifest["recall"]["value"],
        "recall_at_10_heldout": curve[manifest["nprobe"]],
        "recall_by_nprobe_heldout": curve,
        "latency_1_query_ms_median": round(1000 * statistics.median(one), 3),
        "latency_64_batch_ms_median": round(1000 * statistics.median(batch), 2),
        "exact_64_batch_ms": round(1000 * exact_s * 64 / len(queries), 1),
        "search_process_peak_rss_mb": round(rss_mb),
        "threads": int(__import__("faiss").omp_get_max_threads()),
    }
    result["speedup_64_batch_vs_exact"] = round(
        result["exact_64_batch_ms"] / result["latency_64_batch_ms_median"], 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print("\n| pool | kind | build | build peak RSS | index file | 1-query | 64-query batch "
          "| exact 64-query batch | recall@10 held-out | recall@10 at build |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {meta['n']:,} x {meta['dim']} | {manifest['kind']} nlist {manifest['nlist']} "
          f"nprobe {manifest['nprobe']} | {result['build_s']} s | {result['build_peak_rss_mb']} "
          f"MB | {result['index_file_mb']} MB | {result['latency_1_query_ms_median']} ms | "
          f"{result['latency_64_batch_ms_median']} ms | {result['exact_64_batch_ms']} ms | "
          f"{result['recall_at_10_heldout']} | {result['recall_at_10_build_loo']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("prepare", "run"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/fewshot-index-scale"))
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.work, args.n, args.noise, args.seed)
    else:
        run(args.work)


if __name__ == "__main__":
    main()
