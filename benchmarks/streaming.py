"""Streaming predict: peak memory by input size, speed against the in-memory path, resume
after kill -9, and the Ray engine against the local one.

    python benchmarks/streaming.py model        # train the benchmark model (sst2, 16 shots)
    python benchmarks/streaming.py memory 10000 100000  # peak RSS per size (+ rows/s)
    python benchmarks/streaming.py speed 100000          # in-memory path vs chunked, same run
    python benchmarks/streaming.py resume 20000          # kill -9 at 3 random points, resume
    python benchmarks/streaming.py resume 200000 --static  # the same with a static encoder
    python benchmarks/streaming.py ray 20000             # local engine vs --engine ray
    python benchmarks/streaming.py scale 100000          # in memory, chunked, ray: one input
    python benchmarks/streaming.py rate 2000             # rows/s of one short run
    python benchmarks/streaming.py static 100000 1000000 # memory of the pipeline itself

Inputs are short texts: the test sets of sst2, trec and banking77 repeated and numbered
(``"<text> #<k>"``, ids ``"<k>"``) up to the size asked for. Every command runs
``fewshot predict`` in a child process with the default text model
(all-MiniLM-L6-v2), ``--no-cache`` (every row embedded), and reads the child's own peak
RSS from ``os.wait4``. Results print as markdown and are appended as JSON lines to
benchmarks/results/streaming.jsonl. Run timings under the bench lock:
``flock /tmp/fewshot-bench.lock python benchmarks/streaming.py ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FEWSHOT_SHARED", ROOT.parent / "shared"))
WORK = Path(os.environ.get("FEWSHOT_BENCH_WORK", "/tmp/fewshot-streaming-bench"))
MODEL = WORK / "model"
RESULTS = ROOT / "benchmarks" / "results" / "streaming.jsonl"
FEWSHOT = [sys.executable, "-c", "from fewshot.cli import main; main()"]


def _texts() -> list[str]:
    texts: list[str] = []
    for name in ("sst2", "trec", "banking77"):
        with open(SHARED / "data" / name / "test.jsonl", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    return texts


def make_data(n: int, suffix: str = ".jsonl") -> Path:
    """``n`` short texts, repeated and numbered, as JSONL (or Parquet)."""
    path = WORK / f"texts-{n}{suffix}"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    base = _texts()
    rows = ({"id": str(k), "text": f"{base[k % len(base)]} #{k}"} for k in range(n))
    tmp = path.with_suffix(".tmp")
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(list(rows)), tmp)
    else:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    tmp.rename(path)
    return path


def train_model() -> Path:
    if not (MODEL / "fewshot.json").exists():
        subprocess.run([*FEWSHOT, "train", str(SHARED / "data" / "sst2"), "--split", "train",
                        "--shots", "16", "-o", str(MODEL), "--no-cache", "--force"], check=True)
    return MODEL


def run(args: list[str], kill_when: Any = None) -> dict[str, Any]:
    """A child process: wall seconds, its own peak RSS (MiB), return code. ``kill_when``
    (a function polled every 10 ms) true: the child is killed with SIGKILL."""
    began = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if kill_when is not None and not killed and kill_when():
            proc.send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - began
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = proc.returncode
    if kill_when is None and code != 0:
        raise SystemExit(f"{' '.join(args)} failed ({code}): {err.strip()[-500:]}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "code": code,
            "stderr": err, "killed": killed}


def predict(data: Path, out: Path, *extra: str, kill_when: Any = None,
            model: Path = MODEL) -> dict[str, Any]:
    for p in (out, Path(f"{out}.progress.json"), Path(f"{out}.partial")):
        if p.is_file() and "--resume" not in extra:
            p.unlink()
    return run([*FEWSHOT, "predict", str(model), str(data), "-o", str(out), "--no-cache",
                "--force", *extra], kill_when)


def in_memory(data: str, out: str, model: str | None = None) -> None:
    """The whole-file path, as fewshot predict ran before it streamed: load every row,
    predict every row, write every row."""
    from fewshot.classifier import FewShotClassifier
    from fewshot.data import load_dataset, write_rows

    clf = FewShotClassifier.load(model or MODEL, cache=False, show_progress=False)
    ds = load_dataset(data, require_labels=False)
    proba = clf.predict_proba(ds.items)
    answers = clf.model_.prediction_rows(proba)
    write_rows(out, ({"id": ds.ids[i], "text": ds.display(i), **a}
                     for i, a in enumerate(answers)))


def record(kind: str, **fields: Any) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps({"bench": kind, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "cpus": os.cpu_count(), **fields}) + "\n")


def _same(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def cmd_rate(n: int) -> None:
    data = make_data(n)
    r = predict(data, WORK / "rate.jsonl")
    print(f"| rate | {n:,} rows | {r['seconds']:.1f} s | {n / r['seconds']:.0f} rows/s "
          f"(model load included) | peak RSS {r['peak_rss_mib']:.0f} MiB |")
    record("rate", n=n, seconds=r["seconds"], peak_rss_mib=r["peak_rss_mib"])


def cmd_memory(sizes: list[int], chunk: int | None) -> None:
    print("| rows | chunk | seconds | rows/s | peak RSS (MiB) |\n"
          "| ---: | ---: | ---: | ---: | ---: |")
    extra = ["--chunk-size", str(chunk)] if chunk else []
    for n in sizes:
        r = predict(make_data(n), WORK / f"mem-{n}.jsonl", *extra)
        print(f"| {n:,} | {chunk or 4096} | {r['seconds']:.0f} | {n / r['seconds']:.1f} | "
              f"{r['peak_rss_mib']:.0f} |", flush=True)
        record("memory", n=n, chunk=chunk or 4096, seconds=r["seconds"],
               peak_rss_mib=r["peak_rss_mib"])
    if a_whole := os.environ.get("FEWSHOT_BENCH_IN_MEMORY"):
        n = int(a_whole)
        r = run([sys.executable, __file__, "_in_memory", str(make_data(n)),
                 str(WORK / f"whole-{n}.jsonl")])
        print(f"| {n:,} (in memory: load all, predict all) | - | {r['seconds']:.0f} | "
              f"{n / r['seconds']:.1f} | {r['peak_rss_mib']:.0f} |")
        record("memory-in-memory", n=n, seconds=r["seconds"], peak_rss_mib=r["peak_rss_mib"])


def static_model() -> Path:
    """A model on a tiny static-embedding encoder (tests/conftest.py's, 32-d, no
    transformer): its encoder costs next to nothing, so the memory of the pipeline itself
    (reading, rows, writing) shows at 1M rows in minutes."""
    model = WORK / "static-model"
    if not (model / "fewshot.json").exists():
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import _tiny_text_model

        encoder = WORK / "static-encoder"
        if not encoder.exists():
            _tiny_text_model(encoder)
        subprocess.run([*FEWSHOT, "train", str(SHARED / "data" / "sst2"), "--split", "train",
                        "--shots", "16", "-o", str(model), "--no-cache", "--force",
                        "--encoder", str(encoder)], check=True)
    return model


def cmd_static(sizes: list[int]) -> None:
    model = static_model()
    print("| rows | path | seconds | rows/s | peak RSS (MiB) |\n"
          "| ---: | --- | ---: | ---: | ---: |")
    for n in sizes:
        data = make_data(n)
        for name in ("chunked (4096)", "in memory"):
            out = WORK / f"static-{n}.jsonl"
            if name == "in memory":
                r = run([sys.executable, __file__, "_in_memory", str(data), str(out), str(model)])
            else:
                r = run([*FEWSHOT, "predict", str(model), str(data), "-o", str(out),
                         "--no-cache", "--force"])
            print(f"| {n:,} | {name} | {r['seconds']:.0f} | {n / r['seconds']:,.0f} | "
                  f"{r['peak_rss_mib']:.0f} |", flush=True)
            record("static-memory", n=n, path=name, seconds=r["seconds"],
                   peak_rss_mib=r["peak_rss_mib"])


def cmd_speed(n: int) -> None:
    data = make_data(n)
    whole = run([sys.executable, __file__, "_in_memory", str(data), str(WORK / "whole.jsonl")])
    chunked = predict(data, WORK / "chunked.jsonl")
    same = _same(WORK / "whole.jsonl", WORK / "chunked.jsonl")
    ratio = whole["seconds"] / chunked["seconds"]
    print("| path | seconds | rows/s | peak RSS (MiB) |\n| --- | ---: | ---: | ---: |")
    for name, r in (("in memory (load all, predict all)", whole), ("chunked (4096)", chunked)):
        print(f"| {name} | {r['seconds']:.0f} | {n / r['seconds']:.0f} | "
              f"{r['peak_rss_mib']:.0f} |")
    print(f"\nchunked speed / in-memory speed: {ratio:.3f}; outputs byte-identical: {same}")
    record("speed", n=n, in_memory=whole["seconds"], chunked=chunked["seconds"],
           in_memory_rss=whole["peak_rss_mib"], chunked_rss=chunked["peak_rss_mib"],
           ratio=ratio, identical=same)


def cmd_resume(n: int, seed: int = 0, static: bool = False) -> None:
    """``static``: the static-embedding model, so a 200k-row job takes minutes (what is
    checked, every row once and the same bytes, does not depend on the encoder's cost;
    its short chunks put more kills in the middle of a write)."""
    data = make_data(n)
    model = static_model() if static else MODEL
    tag = "-static" if static else ""
    whole = WORK / f"resume-whole{tag}-{n}.jsonl"
    if not whole.exists():  # the uninterrupted run (kept between runs of this command)
        predict(data, whole, "--chunk-size", "512", model=model)
    out = WORK / "resume.jsonl"
    for p in (out, Path(f"{out}.progress.json"), Path(f"{out}.partial")):
        p.unlink(missing_ok=True)
    rng = random.Random(seed)
    state_file = Path(f"{out}.progress.json")
    kills = []
    for k in range(3):
        # Killed once the record counts a random number of rows more than at the start
        # of this attempt, then a random 0-500 ms later (mid-chunk, mid-write, ...).
        start = json.loads(state_file.read_text())["rows_written"] if k else 0
        target = start + rng.randint(1, max(1, (n - start) // 3))
        delay = rng.uniform(0, 0.5)
        reached: list[float] = []

        def when(target: int = target, delay: float = delay,
                 reached: list[float] = reached) -> bool:
            try:
                done = json.loads(state_file.read_text())["rows_written"]
            except (OSError, ValueError, KeyError):
                return False
            if done >= target and not reached:
                reached.append(time.monotonic())
            return bool(reached) and time.monotonic() - reached[0] >= delay

        r = predict(data, out, "--chunk-size", "512", *(["--resume"] if k else []),
                    kill_when=when, model=model)
        state = json.loads(state_file.read_text())
        kills.append({"target_rows": target, "delay_s": round(delay, 2), "code": r["code"],
                      "killed": r["killed"], "rows_recorded": state["rows_written"],
                      "bytes_on_disk": Path(f"{out}.partial").stat().st_size,
                      "bytes_recorded": state["stream"]["bytes"]})
    final = predict(data, out, "--chunk-size", "512", "--resume", model=model)
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    once = sorted(ids, key=int) == [str(k) for k in range(n)] and len(set(ids)) == n
    same = _same(whole, out)
    print("| kill | once rows >= | then (s) | exit | rows recorded | bytes on disk / "
          "recorded |\n| ---: | ---: | ---: | ---: | ---: | --- |")
    for k, kill in enumerate(kills, 1):
        print(f"| {k} | {kill['target_rows']:,} | {kill['delay_s']} | {kill['code']} | "
              f"{kill['rows_recorded']:,} | {kill['bytes_on_disk']:,} / "
              f"{kill['bytes_recorded']:,} |")
    print(f"\n{n:,} rows; each id exactly once: {once}; byte-identical to the uninterrupted "
          f"run: {same}; last resume {final['seconds']:.0f} s")
    record("resume", n=n, model="static" if static else "all-MiniLM-L6-v2", kills=kills,
           each_once=once, identical=same)


def cmd_ray(n: int, workers: int | None) -> None:
    data = make_data(n, ".parquet")
    local = predict(data, WORK / "local.parquet")
    ray_out = WORK / "ray.parquet"
    extra = ["--engine", "ray", *(["--workers", str(workers)] if workers else [])]
    ray = predict(data, ray_out, *extra)
    import pyarrow.parquet as pq

    from fewshot.jobs.ray_engine import read_output

    a = {r["id"]: r for r in pq.read_table(WORK / "local.parquet").to_pylist()}
    b = {r["id"]: r for r in read_output(ray_out)}
    same = a == b
    labels = sum(a[k]["label"] == b[k]["label"] for k in a if k in b)
    ratio = local["seconds"] / ray["seconds"]
    print("| engine | seconds (process, Ray start-up included) | rows/s |\n| --- | ---: | ---: |")
    print(f"| local | {local['seconds']:.0f} | {n / local['seconds']:.0f} |")
    print(f"| ray | {ray['seconds']:.0f} | {n / ray['seconds']:.0f} |")
    print(f"\nray throughput / local: {ratio:.3f}; rows identical: {same}; same labels "
          f"{labels}/{n}")
    record("ray", n=n, local=local["seconds"], ray=ray["seconds"], ratio=ratio,
           identical=same, same_labels=labels)


def _compare(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> tuple[bool, int, float]:
    """Same ids and fields, the number of same labels, the largest probability gap."""
    same_labels, gap = 0, 0.0
    for k, row in a.items():
        other = b.get(k)
        if other is None or set(other) != set(row):
            continue
        same_labels += row["label"] == other["label"]
        gap = max([gap] + [abs(row[f] - other[f]) for f in row
                           if isinstance(row[f], float)])
    return set(a) == set(b), same_labels, gap


def cmd_scale(n: int, workers: int | None) -> None:
    """The in-memory path, the chunked local engine and the Ray engine on one JSONL
    input, one after another in this run: the speed and the Ray targets together."""
    from fewshot.jobs.ray_engine import read_output

    data = make_data(n)
    whole = run([sys.executable, __file__, "_in_memory", str(data), str(WORK / "whole.jsonl")])
    chunked = predict(data, WORK / "chunked.jsonl")
    ray_out = WORK / "ray.jsonl"
    ray = predict(data, ray_out, "--engine", "ray",
                  *(["--workers", str(workers)] if workers else []))
    identical = _same(WORK / "whole.jsonl", WORK / "chunked.jsonl")
    local = {r["id"]: r for r in map(json.loads, (WORK / "chunked.jsonl").open())}
    ids_same, labels, gap = _compare(local, {r["id"]: r for r in read_output(ray_out)})
    print("| path | seconds (whole process) | rows/s | peak RSS (MiB) |\n"
          "| --- | ---: | ---: | ---: |")
    for name, r in (("in memory (load all, predict all)", whole),
                    ("chunked, local engine (4096)", chunked), ("--engine ray", ray)):
        print(f"| {name} | {r['seconds']:.0f} | {n / r['seconds']:.0f} | "
              f"{r['peak_rss_mib']:.0f} |")
    speed, ray_ratio = whole["seconds"] / chunked["seconds"], chunked["seconds"] / ray["seconds"]
    print(f"\nchunked / in memory: {speed:.3f} (outputs byte-identical: {identical}); "
          f"ray / local: {ray_ratio:.3f} (same ids: {ids_same}, same labels {labels}/{n}, "
          f"largest probability gap {gap:.2e})")
    record("speed", n=n, in_memory=whole["seconds"], chunked=chunked["seconds"],
           in_memory_rss=whole["peak_rss_mib"], chunked_rss=chunked["peak_rss_mib"],
           ratio=speed, identical=identical)
    record("ray", n=n, input="jsonl", local=chunked["seconds"], ray=ray["seconds"],
           ratio=ray_ratio, same_ids=ids_same, same_labels=labels, max_probability_gap=gap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["model", "rate", "memory", "speed", "resume",
                                            "ray", "scale", "static", "_in_memory"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--static", action="store_true",
                        help="resume: the static-embedding model instead of MiniLM")
    a = parser.parse_args()
    if a.command == "_in_memory":
        in_memory(*a.args)
        return
    train_model()
    sizes = [int(x) for x in a.args] or [2000]
    if a.command == "rate":
        cmd_rate(sizes[0])
    elif a.command == "memory":
        cmd_memory(sizes, a.chunk_size)
    elif a.command == "speed":
        cmd_speed(sizes[0])
    elif a.command == "resume":
        cmd_resume(sizes[0], static=a.static)
    elif a.command == "static":
        cmd_static(sizes)
    elif a.command == "ray":
        cmd_ray(sizes[0], a.workers)
    elif a.command == "scale":
        cmd_scale(sizes[0], a.workers)


if __name__ == "__main__":
    main()
