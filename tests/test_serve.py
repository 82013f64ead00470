"""fewshot serve: the real server (uvicorn on a free loopback port) spoken to over HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import SENTIMENT
from typer.testing import CliRunner

from fewshot import FewShotClassifier, __version__
from fewshot.cli import app as cli_app
from fewshot.errors import DataError
from fewshot.serve import MicroBatcher, ServeSettings, create_app
from fewshot.serve.batching import ShuttingDown

TEXTS = [t for t, _ in SENTIMENT]
LABELS = [y for _, y in SENTIMENT]
KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
HOW = 'send JSON: Content-Type: application/json and a body {"items": [...]}'
#: The CLI server's limits, small so each is easy to cross.
MAX_ITEMS, MAX_CHARS, MAX_KB = 8, 200, 64


def rows(clf: FewShotClassifier, items: list) -> list[dict]:
    """What ``fewshot predict`` writes for ``items``, without id and text."""
    return clf.model_.prediction_rows(clf.predict_proba(items), threshold=clf.threshold,
                                      min_labels=clf.min_labels)


# -- servers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path):
    folder = tmp_path_factory.mktemp("serve") / "model"
    FewShotClassifier(str(tiny_text_model_dir), cache=False, show_progress=False,
                      calibration="temperature").fit(TEXTS, LABELS).save(folder)
    return folder, FewShotClassifier.load(folder, cache=False, show_progress=False)


@pytest.fixture(scope="module", autouse=True)
def _server_process(text_model, tmp_path_factory: pytest.TempPathFactory):
    """``fewshot serve`` as a user runs it: a subprocess, port 0, the key from the env.
    Started with the module, so it loads while the in-thread tests run."""
    folder, _ = text_model
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    script = Path(sys.executable).with_name("fewshot")
    env = {**os.environ, "FEWSHOT_API_KEY": KEY, "FEWSHOT_CACHE": str(log.parent / "cache")}
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [str(script), "serve", str(folder), "--port", "0", "--device", "cpu",
             "--max-items", str(MAX_ITEMS), "--max-text-chars", str(MAX_CHARS),
             "--max-body-kb", str(MAX_KB), "--max-wait-ms", "50"],
            stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        yield proc, log
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    # SIGTERM is a normal stop: uvicorn's graceful shutdown, a last log line, exit code 0.
    assert code == 0, log.read_text()
    assert json.loads(log.read_text().splitlines()[-1]) == {"event": "stopped"}


@pytest.fixture(scope="module")
def server(_server_process) -> tuple[str, Path]:
    """The URL of the ``fewshot serve`` process, once it answers, and its log file."""
    proc, log = _server_process
    return _started_url(proc, log), log


def _started_url(proc: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "started":
                url = json.loads(line)["url"]
                while time.monotonic() < deadline:
                    with contextlib.suppress(httpx.TransportError):
                        if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                            return url
                    time.sleep(0.1)
        if proc.poll() is not None:
            raise AssertionError(f"fewshot serve exited {proc.returncode}: {log.read_text()}")
        time.sleep(0.1)
    raise AssertionError(f"fewshot serve did not start: {log.read_text()}")


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    """``app`` under a real uvicorn on a free loopback port, in a thread."""
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def post(url: str, body: object = None, *, headers: dict | None = None, **kwargs):
    if body is not None:
        kwargs["json"] = body
    return httpx.post(f"{url}/predict", headers={**AUTH, **(headers or {})}, timeout=30,
                      **kwargs)


# -- in-thread servers: multi-label and image models ----------------------------------------
def test_multi_label_model_answers_label_lists(tiny_text_encoder):
    labels = [[y, "cinema"] if ("film" in t or "movie" in t) else [y] for t, y in SENTIMENT]
    clf = FewShotClassifier(tiny_text_encoder, cache=False).fit(TEXTS, labels)
    with running(create_app(clf, ServeSettings(max_wait_ms=0))) as url:
        answer = post(url, {"items": TEXTS[:4]})
        info = httpx.get(f"{url}/info").json()
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert predictions == rows(clf, TEXTS[:4])
    assert [p["labels"] for p in predictions] == clf.predict(TEXTS[:4])
    assert all(p.keys() == {"labels", "probabilities"} for p in predictions)
    assert info["multi_label"] is True and info["labels"] == ["cinema", "neg", "pos"]
    assert info["limits"]["api_key"] is False  # no key: /predict needed none above


def test_image_model_takes_base64_and_multipart(tiny_image_encoder, image_folder: Path):
    paths = sorted(image_folder.glob("*/*.png"))
    clf = FewShotClassifier(tiny_image_encoder, cache=False).fit(
        paths, [p.parent.name for p in paths])
    items = [paths[0], paths[7], paths[3]]
    expected = rows(clf, items)
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in items]
    encoded[1] = "data:image/png;base64," + encoded[1]
    with running(create_app(clf, ServeSettings(max_items=3, api_key=KEY))) as url:
        as_json = post(url, {"items": encoded})
        as_files = post(url, files=[("items", (p.name, p.read_bytes(), "image/png"))
                                    for p in items])
        not_b64 = post(url, {"items": [encoded[0], "not base64!"]})
        not_image = post(url, {"items": [base64.b64encode(b"plain text").decode()]})
        not_image_file = post(url, files=[("items", ("a.png", b"GIF89a broken", "image/png"))])
        other_field = post(url, files=[("photo", ("a.png", paths[0].read_bytes(), "image/png"))])
        too_many = post(url, files=[("items", (p.name, p.read_bytes(), "image/png"))
                                    for p in paths[:4]])
        still = post(url, {"items": encoded[:1]})
    assert as_json.status_code == 200 and as_json.json() == {"predictions": expected}
    assert as_files.status_code == 200 and as_files.json() == {"predictions": expected}
    assert (not_b64.status_code, not_b64.json()) == (422, {
        "error": "bad_image",
        "message": "item 1 is not base64; send each image file base64-encoded (base64 -w0 FILE)"})
    assert not_image.status_code == 422 and not_image.json()["error"] == "bad_image"
    assert not_image.json()["message"].startswith("item 0 is not an image PIL can read (")
    assert not_image_file.status_code == 422
    assert not_image_file.json()["message"].startswith("file 0 is not an image PIL can read")
    assert (other_field.status_code, other_field.json()["message"]) == (
        422, "unexpected form field 'photo'; upload image files in the field 'items' only")
    assert too_many.status_code == 413 and too_many.json()["limit"] == "max_items"
    assert still.status_code == 200


def test_exported_folder_serves_with_its_export_figures(text_model, tmp_path: Path):
    from fewshot.model.folder import read_manifest

    folder, clf = text_model
    exported = tmp_path / "onnx"
    result = CliRunner().invoke(cli_app, ["export", str(folder), "--output", str(exported)])
    assert result.exit_code == 0, result.output
    onnx = FewShotClassifier.load(exported, cache=False)
    manifest = read_manifest(exported)
    with running(create_app(onnx, manifest=manifest)) as url:
        info = httpx.get(f"{url}/info").json()
        answer = post(url, {"items": TEXTS})
    assert info["format"]["encoder"] == "onnx"
    assert info["export"] == manifest["encoder"]["export"] and "export" not in info["encoder"]
    assert info["export"]["check"]["label_agreement"] == 1.0
    assert answer.json()["predictions"] == rows(onnx, TEXTS)
    assert [p["label"] for p in answer.json()["predictions"]] == clf.predict(TEXTS).tolist()


# -- the micro-batcher on its own ------------------------------------------------------------
def test_batcher_joins_requests_that_queue_while_the_model_runs():
    calls: list[list[str]] = []
    release = threading.Event()

    def predict(items: list[str]) -> np.ndarray:
        if not calls:
            release.wait(10)  # the first call blocks until every other request is queued
        calls.append(list(items))
        return np.array([[len(x)] for x in items], dtype=float)

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(predict, max_batch=5, max_wait=0.0)
        await batcher.start()
        first = asyncio.create_task(batcher.predict(["a"]))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher.predict(["b" * i] * i)) for i in (1, 2, 3, 1)]
        await asyncio.sleep(0.05)
        release.set()
        out = await asyncio.gather(first, *rest)
        assert batcher.stats.to_dict() == {"batches": 3, "items": 8, "requests": 5,
                                           "largest_batch": 4}
        await batcher.stop()
        return out

    out = asyncio.run(main())
    # Queued while the first call ran: [b], [bb bb] join (3 items); [bbb x3] would pass
    # max_batch=5, so it opens the next batch with [b].
    assert calls == [["a"], ["b", "bb", "bb"], ["bbb"] * 3 + ["b"]]
    assert [o[:, 0].tolist() for o in out] == [[1], [1], [2, 2], [3, 3, 3], [1]]


def test_batcher_fails_only_the_request_at_fault():
    def predict(items: list[str]) -> np.ndarray:
        if "bad" in items:
            raise DataError("item is bad; drop it")
        return np.ones((len(items), 2))

    async def main() -> list:
        batcher = MicroBatcher(predict, max_batch=16, max_wait=0.05)
        await batcher.start()
        out = await asyncio.gather(batcher.predict(["x", "y"]), batcher.predict(["bad"]),
                                   batcher.predict(["z"]), return_exceptions=True)
        after = await batcher.predict(["w"])
        await batcher.stop()
        return [*out, after]

    good, bad, other, after = asyncio.run(main())
    assert good.shape == (2, 2) and other.shape == (1, 2) and after.shape == (1, 2)
    assert isinstance(bad, DataError) and str(bad) == "item is bad; drop it"


def test_batcher_stop_fails_the_requests_it_holds():
    def predict(items: list[str]) -> np.ndarray:
        time.sleep(0.3)
        return np.zeros((len(items), 1))

    async def main() -> list:
        batcher = MicroBatcher(predict, max_batch=1, max_wait=0.0)
        await batcher.start()
        running = asyncio.create_task(batcher.predict(["a"]))
        queued = asyncio.create_task(batcher.predict(["b"]))
        await asyncio.sleep(0.1)  # "a" is in the model, "b" waits in the queue
        await batcher.stop()
        return await asyncio.gather(running, queued, return_exceptions=True)

    for outcome in asyncio.run(main()):
        assert isinstance(outcome, ShuttingDown)
        assert str(outcome) == "the server is shutting down; send the request again"


# -- the command -----------------------------------------------------------------------------
def test_serve_command_errors_are_one_line(tmp_path: Path, text_model) -> None:
    runner = CliRunner()
    usage = next(line for line in runner.invoke(cli_app, ["serve", "--help"]).stdout.splitlines()
                 if "Usage:" in line)
    assert usage.strip() == "Usage: fewshot serve [OPTIONS] MODEL_DIR"
    missing = runner.invoke(cli_app, ["serve", str(tmp_path / "none"), "--port", "0"])
    assert missing.exit_code == 1
    assert missing.stderr.strip() == (f"error: no model folder at {tmp_path / 'none'}; train "
                                      "one with fewshot train")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        busy = runner.invoke(cli_app, ["serve", str(text_model[0]), "--port", str(port)])
    assert busy.exit_code == 2
    assert busy.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port} (")
    assert busy.stderr.strip().endswith("); choose another --port or stop what uses it")
    empty = runner.invoke(cli_app, ["serve", str(text_model[0]), "--api-key", ""])
    assert empty.exit_code == 2 and "--api-key is empty" in empty.stderr


# -- the fewshot serve process: predictions ------------------------------------------------
def test_predictions_are_the_in_process_rows_and_requests_share_batches(server, text_model):
    url, _ = server
    _, clf = text_model
    requests = [TEXTS[i:i + 1 + i % 3] for i in range(8)] + [["très bien ☺", "x" * MAX_CHARS]]
    before = httpx.get(f"{url}/info", headers=AUTH).json()["batching"]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers=AUTH, timeout=30) as client:
            return await asyncio.gather(*(client.post(f"{url}/predict", json={"items": r})
                                          for r in requests))

    answers = asyncio.run(send_all())
    for items, answer in zip(requests, answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {"predictions": rows(clf, items)}
    assert answers[0].json()["predictions"][0]["label"] == "pos"
    assert answers[8].json()["predictions"][0].keys() == {"label", "score", "probabilities"}
    after = httpx.get(f"{url}/info", headers=AUTH).json()["batching"]
    assert after["requests"] - before["requests"] == len(requests)
    assert after["items"] - before["items"] == sum(map(len, requests))
    # Nine requests sent at once, each waiting up to 50 ms for company: fewer model calls.
    assert after["batches"] - before["batches"] < len(requests)
    assert after["largest_batch"] > 3


# -- limits and bad requests -----------------------------------------------------------------
def test_limits_answer_json_naming_the_limit(server):
    url, _ = server
    too_many = post(url, {"items": ["good"] * (MAX_ITEMS + 1)})
    assert (too_many.status_code, too_many.json()) == (413, {
        "error": "too_many_items", "limit": "max_items", "max": MAX_ITEMS,
        "message": f"{MAX_ITEMS + 1} items in one request, more than {MAX_ITEMS}; split them "
        "over several requests (the server's --max-items)"})
    too_long = post(url, {"items": ["good", "a" * (MAX_CHARS + 1)]})
    assert (too_long.status_code, too_long.json()) == (422, {
        "error": "text_too_long", "limit": "max_text_chars", "max": MAX_CHARS,
        "message": f"item 1 has {MAX_CHARS + 1} characters, more than {MAX_CHARS}; shorten "
        "or split it (the server's --max-text-chars)"})
    big = json.dumps({"items": ["good"]}).ljust(MAX_KB * 1024 + 1).encode()
    body_limit = {"error": "body_too_large", "limit": "max_body_kb", "max": MAX_KB,
                  "message": f"the request body is larger than {MAX_KB} KiB; send fewer or "
                  "smaller items per request (the server's --max-body-kb)"}
    declared = post(url, content=big, headers={"Content-Type": "application/json"})
    assert (declared.status_code, declared.json()) == (413, body_limit)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is counted as it comes
        for start in range(0, len(big), 4096):
            yield big[start:start + 4096]

    streamed = post(url, content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in streamed.request.headers
    assert (streamed.status_code, streamed.json()) == (413, body_limit)
    at_limit = json.dumps({"items": ["good"] * MAX_ITEMS}).ljust(MAX_KB * 1024).encode()
    assert post(url, content=at_limit, headers={"Content-Type": "application/json"}).json()[
        "predictions"][0]["label"] == "pos"


BAD_REQUESTS = [  # (body bytes or None, content type, status, error code)
    (b'{"items": ["good"', "application/json", 400, "malformed_json"),
    (b'{"items": ["\xff\xfe bad bytes"]}', "application/json", 400, "malformed_json"),
    ("{\"items\": [\"caf\u00e9\"]}".encode("utf-16"), "application/json", 400, "malformed_json"),
    (b"", "application/json", 400, "malformed_json"),
    (b"[" * 50_000, "application/json", 400, "malformed_json"),
    (b'{"items": "good"}', "application/json", 422, "invalid_request"),
    (b'{"items": [1, 2]}', "application/json", 422, "invalid_request"),
    (b'{"items": [null]}', "application/json", 422, "invalid_request"),
    (b'{"items": [["nested"]]}', "application/json", 422, "invalid_request"),
    (b'{"texts": ["good"]}', "application/json", 422, "invalid_request"),
    (b'{"items": ["good"], "extra": 1}', "application/json", 422, "invalid_request"),
    (b'["good"]', "application/json", 422, "invalid_request"),
    (b"null", "application/json", 422, "invalid_request"),
    (b'{"items": []}', "application/json", 422, "no_items"),
    (json.dumps({"items": ["a"] * 10_000}).encode(), "application/json", 413, "too_many_items"),
    (b'{"items": ["good"]}', "text/plain", 415, "unsupported_media_type"),
    (b'{"items": ["good"]}', None, 415, "unsupported_media_type"),
    (b"items=good", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b"--x\r\n\r\ngood\r\n--x--", "multipart/form-data; boundary=x", 415,
     "unsupported_media_type"),
]


def test_bad_requests_get_4xx_json_and_the_server_keeps_serving(server, text_model):
    url, _ = server
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
        for body, ctype, status, code in BAD_REQUESTS:
            headers = {"Content-Type": ctype} if ctype else {}
            answer = client.post("/predict", content=body, headers=headers)
            assert (answer.status_code, answer.json()["error"]) == (status, code), body[:60]
            assert answer.json()["message"]
        first = client.post("/predict", content=BAD_REQUESTS[6][0],
                            headers={"Content-Type": "application/json"}).json()
        assert first == {"error": "invalid_request",
                         "message": f"items.0: Input should be a valid string (and 1 more); {HOW}",
                         "errors": [{"loc": ["items", 0], "msg": "Input should be a valid string"},
                                    {"loc": ["items", 1], "msg": "Input should be a valid string"}]}
        assert client.post("/predict", content=b'{"items": []}',
                           headers={"Content-Type": "application/json"}).json() == {
            "error": "no_items", "message": "items is empty; send at least one item"}
        for method, path, status in (("GET", "/predict", 405), ("GET", "/nope", 404),
                                     ("PUT", "/info", 405), ("DELETE", "/health", 405)):
            answer = client.request(method, path)
            assert answer.status_code == status and "error" in answer.json(), (method, path)
        assert client.get("/nope").json() == {
            "error": "not_found", "message": "no such path /nope; see /docs for the API"}
        assert client.get("/health").json() == {"status": "ok"}
        assert client.post("/predict", json={"items": TEXTS[:2]}).json() == {
            "predictions": rows(text_model[1], TEXTS[:2])}


def test_api_key_guards_everything_but_health(server):
    url, _ = server
    denied = {"error": "unauthorized", "message": "missing or wrong API key; send the header "
              "'Authorization: Bearer <key>' with the server's --api-key"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": KEY}, {"Authorization": f"Bearer {KEY}x"}):
        for path in ("/predict", "/info", "/docs", "/openapi.json"):
            answer = httpx.request("POST" if path == "/predict" else "GET", f"{url}{path}",
                                   headers=headers, json={"items": ["good"]})
            assert (answer.status_code, answer.json()) == (401, denied), (headers, path)
            assert answer.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{url}/health", headers={"Authorization": "Bearer wrong"}).status_code == 200
    assert httpx.get(f"{url}/info", headers={"authorization": f"bearer {KEY}"}).status_code == 200


def test_info_docs_and_openapi(server, text_model):
    url, _ = server
    _, clf = text_model
    info = httpx.get(f"{url}/info", headers=AUTH).json()
    assert info["labels"] == ["neg", "pos"] and info["multi_label"] is False
    assert info["modality"] == "text"
    assert info["encoder"]["id"] == clf.encoder_.id and "resolved_from" not in info["encoder"]
    assert info["format"] == {"format": "fewshot-model", "format_version": 1,
                              "fewshot_version": __version__, "encoder": "torch"}
    assert info["limits"] == {"max_items": MAX_ITEMS, "max_text_chars": MAX_CHARS,
                              "max_body_kb": MAX_KB, "api_key": True}
    assert info["batching"]["max_batch"] == 256 and info["batching"]["max_wait_ms"] == 50.0
    assert "export" not in info  # a folder from fewshot train has no export figures
    docs = httpx.get(f"{url}/docs", headers=AUTH)
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    spec = httpx.get(f"{url}/openapi.json", headers=AUTH).json()
    assert set(spec["paths"]) == {"/predict", "/health", "/info"}
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert {"400", "401", "413", "415", "422"} <= set(spec["paths"]["/predict"]["post"]
                                                       ["responses"])


def test_one_json_log_line_per_request(server):
    url, log = server
    marker = f"/log-check-{time.monotonic_ns()}"
    httpx.get(f"{url}{marker}", headers=AUTH)
    post(url, {"items": ["good", "bad"]})
    post(url, {"items": ["good"] * (MAX_ITEMS + 1)})
    time.sleep(0.2)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    requests = [r for r in lines if r["event"] == "request"]
    start = next(i for i, r in enumerate(requests) if r["path"] == marker)
    missing, ok, limited = requests[start:start + 3]
    assert (missing["status"], missing["error"]) == (404, "not_found")
    assert (ok["method"], ok["path"], ok["status"], ok["items"]) == ("POST", "/predict", 200, 2)
    assert "error" not in ok and ok["ms"] > 0 and ok["client"].startswith("127.0.0.1:")
    assert (limited["status"], limited["error"]) == (413, "too_many_items")
    assert {"time", "method", "path", "status", "ms"} <= set(limited)
