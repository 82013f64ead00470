"""``fewshot serve`` under load, against in-process batch prediction of the same items.

    flock /tmp/fewshot-bench.lock python benchmarks/serve_load.py

1. Trains all-MiniLM-L6-v2 + logistic regression on 8 shots per class of ag_news
   (seed 0) and starts ``fewshot serve`` on it in a subprocess (loopback, port 0).
2. Load: ``--clients`` concurrent clients (httpx + asyncio, one connection each) post
   1 to ``--max-request`` ag_news test texts per request for ``--seconds`` (and at most
   ``--max-requests`` requests). Failed: any error, non-200 answer or wrong row count.
3. Bad-request sweep: malformed and non-UTF-8 JSON, wrong types, empty and 10,000-item
   lists, a body over the limit, wrong content types, unknown paths; every answer must
   be a 4xx JSON error, and the server must still answer /health and /predict after.
4. Reference: this process loads the same folder and runs ``predict_proba`` in one call
   on the first ``--reference-items`` items the clients send, before the server starts
   and after it stops; served throughput is compared with the mean of the two, per
   wall second (the target) and per CPU second of the server process (what the
   service costs beyond the model, whatever else the machine runs).

Prints markdown and appends a JSON line to --output (benchmarks/results/serve_load.jsonl).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FEWSHOT_SHARED", ROOT.parent / "shared"))
AG_NEWS = SHARED / "data" / "ag_news"


def _read(split: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (AG_NEWS / f"{split}.jsonl").open()]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def train_model(folder: Path, shots: int) -> None:
    from fewshot import FewShotClassifier
    from fewshot.data import few_shot_indices

    texts, labels = _read("train")
    idx = few_shot_indices(labels, shots, seed=0)
    clf = FewShotClassifier("all-MiniLM-L6-v2", cache=False, device="cpu", show_progress=False)
    clf.fit([texts[i] for i in idx], [labels[i] for i in idx]).save(folder)


def start_server(folder: Path, log: Path, args: argparse.Namespace) -> tuple[subprocess.Popen,
                                                                             str]:
    import httpx

    script = Path(sys.executable).with_name("fewshot")
    cmd = [str(script), "serve", str(folder), "--port", "0", "--device", "cpu",
           "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        started = [json.loads(line) for line in log.read_text().splitlines()
                   if line.startswith('{"event": "started"')]
        if started:
            url = started[0]["url"]
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
        if proc.poll() is not None:
            raise SystemExit(f"fewshot serve exited {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"fewshot serve did not start:\n{log.read_text()}")


def make_plans(pool: list[str], args: argparse.Namespace) -> list[list[list[int]]]:
    """Each client's requests (pool indices), drawn once with seed 0."""
    rng = np.random.default_rng(0)
    per_client = min(args.max_requests, 5000)
    return [[rng.integers(0, len(pool), int(rng.integers(1, args.max_request + 1))).tolist()
             for _ in range(per_client)] for _ in range(args.clients)]


def first_items(plans: list[list[list[int]]], n: int) -> list[int]:
    """The first ``n`` items the clients send: their requests taken in turn."""
    out: list[int] = []
    for step in range(len(plans[0])):
        for plan in plans:
            out.extend(plan[step])
            if len(out) >= n:
                return out[:n]
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, pool: list[str], plans: list[list[list[int]]],
               args: argparse.Namespace) -> dict:
    import httpx

    latencies: list[float] = []
    sent: list[int] = []  # pool indices of answered items, in answer order
    failures: list[str] = []
    count = 0
    began = time.perf_counter()
    deadline = began + args.seconds

    async def client(plan: list[list[int]], http: httpx.AsyncClient) -> None:
        nonlocal count
        for idx in plan:
            if time.perf_counter() >= deadline or count >= args.max_requests:
                return
            count += 1
            t = time.perf_counter()
            try:
                answer = await http.post("/predict", json={"items": [pool[i] for i in idx]})
                took = time.perf_counter() - t
                n = len(answer.json().get("predictions", [])) if answer.status_code == 200 \
                    else -1
            except Exception as e:  # a failed request, whatever the kind
                failures.append(f"{type(e).__name__}: {e}")
                continue
            if answer.status_code != 200 or n != len(idx):
                failures.append(f"{answer.status_code}: {answer.text[:200]}")
                continue
            latencies.append(took)
            sent.extend(idx)

    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await asyncio.gather(*(client(plan, http) for plan in plans))
    elapsed = time.perf_counter() - began
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies) + len(failures), "failed": len(failures),
        "failures": failures[:5], "items": len(sent), "seconds": round(elapsed, 2),
        "items_per_s": round(len(sent) / elapsed, 1),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p90_ms": round(float(np.percentile(ms, 90)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1), "sent": sent,
    }


def sweep(url: str) -> dict:
    """Bad requests: every answer must be a 4xx JSON error; then the server still serves."""
    import httpx

    j = {"Content-Type": "application/json"}
    cases = [
        ("malformed JSON", b'{"items": ["a"', j),
        ("non-UTF-8 body", b'{"items": ["\xff\xfe\xfd"]}', j),
        ("UTF-16 body", '{"items": ["a"]}'.encode("utf-16"), j),
        ("binary garbage", bytes(range(256)) * 64, j),
        ("empty body", b"", j),
        ("deeply nested", b"[" * 100_000, j),
        ("items not a list", b'{"items": "a"}', j),
        ("numbers", b'{"items": [1, 2, 3]}', j),
        ("nulls", b'{"items": [null]}', j),
        ("objects", b'{"items": [{"text": "a"}]}', j),
        ("wrong field", b'{"texts": ["a"]}', j),
        ("extra field", b'{"items": ["a"], "x": 1}', j),
        ("top-level list", b'["a"]', j),
        ("empty list", b'{"items": []}', j),
        ("10,000 items", json.dumps({"items": ["a short text"] * 10_000}).encode(), j),
        ("text too long", json.dumps({"items": ["a" * 20_000]}).encode(), j),
        ("body too large", b'{"items": ["' + b"a" * (17 << 20) + b'"]}', j),
        ("text/plain", b'{"items": ["a"]}', {"Content-Type": "text/plain"}),
        ("no content type", b'{"items": ["a"]}', {}),
        ("form", b"items=a", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("multipart to a text model", b"--b\r\n\r\na\r\n--b--",
         {"Content-Type": "multipart/form-data; boundary=b"}),
    ]
    answers: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=120) as http:
        for name, body, headers in cases:
            try:
                r = http.post("/predict", content=body, headers=headers)
                code = r.json().get("error") if r.headers.get("content-type", "").startswith(
                    "application/json") else None
                answers.append({"case": name, "status": r.status_code, "error": code})
            except Exception as e:  # the server must not drop the connection either
                answers.append({"case": name, "status": None, "error": f"{type(e).__name__}"})
        for method, path in (("GET", "/predict"), ("GET", "/nope"), ("PUT", "/info")):
            r = http.request(method, path)
            answers.append({"case": f"{method} {path}", "status": r.status_code,
                            "error": r.json().get("error")})
        health = http.get("/health").status_code
        after = http.post("/predict", json={"items": ["Stocks fell on Wall Street today."]})
    only_4xx = all(a["status"] is not None and 400 <= a["status"] < 500 and a["error"]
                   for a in answers)
    return {"cases": answers, "only_4xx_json": only_4xx,
            "serving_after": health == 200 and after.status_code == 200
            and len(after.json()["predictions"]) == 1}


def reference(clf: Any, items: list[str]) -> tuple[float, float]:
    """Items per wall second and per CPU second of in-process ``predict_proba`` on all
    ``items`` in one call (the encoder sorts them by length and runs batches of 32, as
    ``fewshot predict`` does)."""
    wall, cpu = time.perf_counter(), time.process_time()
    proba = clf.predict_proba(items)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert len(proba) == len(items)
    return len(items) / wall, len(items) / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-request", type=int, default=32, help="Items per request: 1..N.")
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--reference-items", type=int, default=600)
    parser.add_argument("--model", type=Path, help="A model folder (default: train one).")
    parser.add_argument("--output", type=Path,
                        default=ROOT / "benchmarks" / "results" / "serve_load.jsonl")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        if folder is None:
            folder = Path(tmp) / "model"
            train_model(folder, args.shots)
        pool, _ = _read("test")
        plans = make_plans(pool, args)
        items = [pool[i] for i in first_items(plans, args.reference_items)]
        from fewshot import FewShotClassifier

        clf = FewShotClassifier.load(folder, cache=False, device="cpu", show_progress=False)
        clf.predict_proba(items[:32])  # load the weights
        load_before = os.getloadavg()[0]
        ref = [reference(clf, items)]  # before the server starts ...
        log = Path(tmp) / "server.log"
        proc, url = start_server(folder, log, args)
        try:
            import httpx

            for _ in range(3):  # first requests of a fresh process
                httpx.post(f"{url}/predict", json={"items": pool[:32]}, timeout=60)
            server_cpu, client_cpu = cpu_seconds(proc.pid), time.process_time()
            ran = asyncio.run(load(url, pool, plans, args))
            server_cpu = cpu_seconds(proc.pid) - server_cpu
            client_cpu = time.process_time() - client_cpu
            stats = httpx.get(f"{url}/info", timeout=30).json()["batching"]
            swept = sweep(url)
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        ref.append(reference(clf, items))  # ... and after it stopped: the same CPUs
        load_after = os.getloadavg()[0]
    ref_wall = float(np.mean([r[0] for r in ref]))
    ref_cpu = float(np.mean([r[1] for r in ref]))
    served_per_cpu = ran["items"] / server_cpu
    ran.pop("sent")
    result = {
        "benchmark": "serve_load", "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "clients": args.clients, "items_per_request": f"1-{args.max_request}",
        "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, **ran,
        "server_batches": stats, "reference_items": len(items),
        "reference_items_per_s": [round(r[0], 1) for r in ref],
        "ratio_to_in_process": round(ran["items_per_s"] / ref_wall, 3),
        "server_items_per_cpu_s": round(served_per_cpu, 1),
        "reference_items_per_cpu_s": [round(r[1], 1) for r in ref],
        "cpu_ratio_to_in_process": round(served_per_cpu / ref_cpu, 3),
        "client_cpu_s": round(client_cpu, 1), "server_cpu_s": round(server_cpu, 1),
        "sweep_only_4xx_json": swept["only_4xx_json"],
        "sweep_serving_after": swept["serving_after"],
        "sweep_cases": swept["cases"], "server_exit_code": code,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("a") as f:
        f.write(json.dumps(result) + "\n")
    mean_batch = stats["items"] / max(stats["batches"], 1)
    print(f"| clients | requests | failed | items/s served | in-process items/s | ratio | "
          f"per CPU-s ratio | p50 ms | p99 ms | mean batch |\n"
          f"|---|---|---|---|---|---|---|---|---|---|\n"
          f"| {args.clients} | {ran['requests']} | {ran['failed']} | {ran['items_per_s']} | "
          f"{ref_wall:.1f} | {result['ratio_to_in_process']} | "
          f"{result['cpu_ratio_to_in_process']} | {ran['p50_ms']} | {ran['p99_ms']} | "
          f"{mean_batch:.1f} |")
    print(f"load average {result['load_average']}; server CPU {server_cpu:.1f} s, client CPU "
          f"{client_cpu:.1f} s over {ran['seconds']} s; server exit code {code}")
    print(f"\nsweep: {len(swept['cases'])} bad requests, only 4xx JSON errors: "
          f"{swept['only_4xx_json']}; serving after: {swept['serving_after']}")
    for case in swept["cases"]:
        print(f"  {case['case']}: {case['status']} {case['error']}")
    if ran["failures"]:
        print("failures:", *ran["failures"], sep="\n  ")


if __name__ == "__main__":
    main()
