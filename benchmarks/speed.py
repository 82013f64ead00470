"""Speed benchmarks: every figure is a ratio to the reference measured in the same run.

    python benchmarks/speed.py text     # fewshot TextEncoder vs SentenceTransformer.encode
    python benchmarks/speed.py image    # fewshot ImageEncoder vs a plain timm forward loop
    python benchmarks/speed.py knn      # VectorIndex vs raw faiss, 1k / 100k / 1M vectors
    python benchmarks/speed.py heads    # head fit time at 8 and 64 shots on banking77
    python benchmarks/speed.py cache    # evaluate twice: warm cache vs cold, in subprocesses
    python benchmarks/speed.py memory   # peak RSS while embedding 100k texts
    python benchmarks/speed.py all

Results print as markdown and are appended as JSON lines to --output
(default benchmarks/results/speed.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FEWSHOT_SHARED", ROOT.parent / "shared"))
MOBILENET = SHARED / "models" / "mobilenetv2-tf-in1k"


def _texts(n: int) -> list[str]:
    rows = []
    for name in ("sst5", "ag_news", "trec", "banking77"):
        with open(SHARED / "data" / name / "train.jsonl") as f:
            rows += [json.loads(line)["text"] for line in f]
    return [rows[i % len(rows)] for i in range(n)]


def _best(fn, repeats: int) -> float:
    """Best of ``repeats`` wall times (the least disturbed run)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_text(n: int, batch_size: int, repeats: int) -> list[dict]:
    from sentence_transformers import SentenceTransformer

    from fewshot.cache import EmbeddingCache, embed
    from fewshot.encoders import TextEncoder

    texts = _texts(n)
    enc = TextEncoder("all-MiniLM-L6-v2", batch_size=batch_size, show_progress=False).fit()
    st: SentenceTransformer = enc.model_
    st.encode(texts[:64], batch_size=batch_size)  # warm up
    rows = []
    # Interleave the two so drift on a shared machine hits both alike.
    ref, ours = [], []
    for _ in range(repeats):
        ref.append(_best(lambda: st.encode(texts, batch_size=batch_size,
                                           show_progress_bar=False), 1))
        ours.append(_best(lambda: enc.encode(texts), 1))
    with tempfile.TemporaryDirectory() as tmp:
        cold = _best(lambda: embed(enc, texts, EmbeddingCache(tmp)), 1)
        warm = _best(lambda: embed(enc, texts, EmbeddingCache(tmp)), 3)
    r, o = min(ref), min(ours)
    rows.append({
        "bench": "text_encode", "n": n, "batch_size": batch_size, "device": enc.device_,
        "reference_s": r, "fewshot_s": o, "ratio_time": o / r,
        "overhead_pct": 100 * (o / r - 1), "reference_items_per_s": n / r,
        "fewshot_items_per_s": n / o, "cold_cache_s": cold, "cold_cache_ratio": cold / r,
        "warm_cache_s": warm, "warm_cache_ratio": warm / r,
    })
    return rows


def bench_image(n: int, batch_size: int, repeats: int) -> list[dict]:
    import timm
    import torch
    from PIL import Image

    from fewshot.encoders import ImageEncoder

    paths = sorted((SHARED / "data" / "hymenoptera" / "train").rglob("*.jpg"))
    paths = [paths[i % len(paths)] for i in range(n)]
    enc = ImageEncoder(f"local-dir:{MOBILENET}", batch_size=batch_size,
                       show_progress=False).fit()
    model = timm.create_model(f"local-dir:{MOBILENET}", pretrained=True, num_classes=0).eval()
    cfg = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**cfg, is_training=False)

    def reference() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(paths), batch_size):
                batch = torch.stack([
                    transform(Image.open(p).convert("RGB")) for p in paths[i:i + batch_size]
                ])
                out.append(model(batch).numpy())
        return np.concatenate(out)

    ref, ours = [], []
    for _ in range(repeats):
        ref.append(_best(reference, 1))
        ours.append(_best(lambda: enc.encode(paths), 1))
    r, o = min(ref), min(ours)
    same = np.allclose(
        enc.encode(paths[:8]),
        (lambda x: x / np.linalg.norm(x, axis=1, keepdims=True))(reference()[:8]), atol=1e-4,
    )
    return [{
        "bench": "image_encode", "model": "mobilenetv2-tf-in1k", "n": n,
        "batch_size": batch_size, "reference_s": r, "fewshot_s": o, "ratio_time": o / r,
        "overhead_pct": 100 * (o / r - 1), "fewshot_items_per_s": n / o,
        "same_output": bool(same),
    }]


def bench_knn(sizes: list[int], n_queries: int, k: int) -> list[dict]:
    import faiss

    from fewshot.index import VectorIndex

    rng = np.random.default_rng(0)
    d = 384
    rows = []
    # Synthetic embeddings: a mixture of 1,000 Gaussian clusters on the sphere (pure
    # uniform noise has no neighbourhood structure and is IVF's worst case).
    centres = rng.standard_normal((1000, d), dtype=np.float32)

    def sample(m: int) -> np.ndarray:
        x = centres[rng.integers(0, len(centres), m)]
        x += 0.6 * rng.standard_normal((m, d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    queries = sample(n_queries)
    for n in sizes:
        x = sample(n)
        t = time.perf_counter()
        ours = VectorIndex(d).add(x)
        ours.search(queries[:1], k)  # builds (and trains, for IVF)
        build = time.perf_counter() - t
        structure = ours.structure
        # The reference: the same faiss index built and searched by hand.
        if structure == "flat":
            raw = faiss.IndexFlatIP(d)
        else:
            nlist = ours._index.nlist
            raw = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            train = x if n <= 64 * nlist else x[np.random.default_rng(0).choice(
                n, 64 * nlist, replace=False)]
            raw.train(train)
            raw.nprobe = ours._index.nprobe
        raw.add(x)
        o = _best(lambda: ours.search(queries, k), 3)
        r = _best(lambda: raw.search(queries, k), 3)
        o1 = _best(lambda: [ours.search(queries[i:i + 1], k) for i in range(100)], 3) / 100
        r1 = _best(lambda: [raw.search(queries[i:i + 1], k) for i in range(100)], 3) / 100
        exact = faiss.IndexFlatIP(d)
        exact.add(x)
        _, gt = exact.search(queries[:200], k)
        _, got = ours.search(queries[:200], k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(gt, got, strict=True)]))
        rows.append({
            "bench": "knn_search", "n": n, "d": d, "k": k, "structure": structure,
            "build_s": build, "queries": n_queries, "fewshot_qps": n_queries / o,
            "faiss_qps": n_queries / r, "ratio_time": o / r, "fewshot_latency_ms": 1000 * o1,
            "faiss_latency_ms": 1000 * r1, "latency_ratio": o1 / r1, f"recall@{k}": recall,
        })
    return rows


def bench_heads(shots: list[int], seeds: list[int]) -> list[dict]:
    from fewshot.cache import EmbeddingCache, embed
    from fewshot.data import few_shot_indices, load_dataset
    from fewshot.encoders import TextEncoder
    from fewshot.heads import make_head

    train = load_dataset(SHARED / "data" / "banking77", "train")
    enc = TextEncoder("all-MiniLM-L6-v2", show_progress=False)
    rows = []
    for n in shots:
        for name in ("logreg", "knn", "centroid"):
            times = []
            for s in seeds:
                idx = few_shot_indices(train.labels, n, s)
                X = embed(enc, [train.items[i] for i in idx], EmbeddingCache())
                y = np.asarray([train.labels[i] for i in idx])
                times.append(_best(lambda: make_head(name).fit(X, y), 1))
            rows.append({"bench": "head_fit", "dataset": "banking77", "n_shot": n,
                         "n_train": len(idx), "head": name,
                         "fit_s_mean": statistics.fmean(times), "fit_s_max": max(times)})
    return rows


def bench_cache() -> list[dict]:
    """``fewshot evaluate`` twice in fresh processes: cold cache, then warm."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FEWSHOT_CACHE": str(Path(tmp) / "cache")}
        model = Path(tmp) / "model"
        data = SHARED / "data" / "trec"
        subprocess.run(["fewshot", "train", str(data), "--shots", "8", "-o", str(model)],
                       env=env, check=True, capture_output=True)
        # train embedded only the 48 training rows: the test set is still cold.
        times = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(["fewshot", "evaluate", str(model), str(data), "--json"],
                           env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - t)
    return [{"bench": "evaluate_warm_cache", "dataset": "trec", "n": 500,
             "first_s": times[0], "second_s": times[1], "third_s": times[2],
             "ratio_second_to_first": times[1] / times[0]}]


def bench_memory(n: int) -> list[dict]:
    """Peak RSS while embedding n texts; run in a subprocess for a clean baseline."""
    code = f"""
import resource, sys, json, time
sys.path.insert(0, {str(ROOT)!r})
from benchmarks.speed import _texts
from fewshot.encoders import TextEncoder
texts = _texts({n})
enc = TextEncoder("all-MiniLM-L6-v2", show_progress=False).fit()
enc.encode(texts[:256])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
out = enc.encode(texts, batch_size=64)
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"base_mb": base / 1024, "peak_mb": peak / 1024, "seconds": dt,
                   "output_mb": out.nbytes / 2**20}}))
"""
    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True)
    m = json.loads(res.stdout.strip().splitlines()[-1])
    return [{"bench": "embed_memory", "n": n, **m,
             "growth_mb": m["peak_mb"] - m["base_mb"],
             "growth_over_output": (m["peak_mb"] - m["base_mb"]) / m["output_mb"]}]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["text", "image", "knn", "heads", "cache", "memory", "all"])
    p.add_argument("--n-text", type=int, default=2000)
    p.add_argument("--n-image", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--knn-sizes", default="1000,100000,1000000")
    p.add_argument("--memory-n", type=int, default=100_000)
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "speed.jsonl")
    a = p.parse_args()
    todo = ["text", "image", "knn", "heads", "cache", "memory"] if a.what == "all" else [a.what]
    rows: list[dict] = []
    for w in todo:
        if w == "text":
            rows += bench_text(a.n_text, a.batch_size, a.repeats)
        elif w == "image":
            rows += bench_image(a.n_image, a.batch_size, a.repeats)
        elif w == "knn":
            rows += bench_knn([int(s) for s in a.knn_sizes.split(",")], 1000, 10)
        elif w == "heads":
            rows += bench_heads([8, 64], [0, 1, 2, 3, 4])
        elif w == "cache":
            rows += bench_cache()
        elif w == "memory":
            rows += bench_memory(a.memory_n)
    machine = {"machine": f"{platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} cores", "python": platform.python_version(),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    a.output.parent.mkdir(parents=True, exist_ok=True)
    with open(a.output, "a") as f:
        for r in rows:
            r.update(machine, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
            f.write(json.dumps(r) + "\n")
    for r in rows:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}))


if __name__ == "__main__":
    main()
