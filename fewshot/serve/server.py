"""Loading a model folder for serving and running it under uvicorn."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fewshot.errors import UsageError

__all__ = ["load_for_serving", "serve_model"]

log = logging.getLogger("fewshot.serve")


def load_for_serving(
    model_dir: str | Path, *, encoder: str | None = None, device: str | None = "auto",
    batch_size: int = 32,
) -> tuple[Any, dict[str, Any]]:
    """The classifier of ``model_dir``, ready to answer, and the folder's manifest.

    No embedding cache (each request's items are new; a cache would only write to
    disk), and one warm-up prediction so the first request does not pay for loading
    the encoder's weights.
    """
    from fewshot.classifier import FewShotClassifier
    from fewshot.model.folder import read_manifest

    manifest = read_manifest(Path(model_dir))
    clf = FewShotClassifier.load(model_dir, encoder=encoder, cache=False, device=device,
                                 batch_size=batch_size, show_progress=False)
    if clf.encoder_.modality == "image":
        from PIL import Image

        clf.predict_proba([Image.new("RGB", (32, 32))])
    else:
        clf.predict_proba(["warm up"])
    return clf, manifest


def serve_model(
    model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
    settings: Any = None, encoder: str | None = None, device: str | None = "auto",
    batch_size: int = 32,
) -> None:
    """Serve the model in ``model_dir`` over HTTP until interrupted (Ctrl-C, SIGTERM).

    ``settings`` is a :class:`~fewshot.serve.app.ServeSettings` (limits, batching,
    API key); ``batch_size`` is the encoder's, which sorts each micro-batch by length
    and runs it in batches of that many. The address is bound before the model
    loads, so a port in use fails at once; port 0 picks a free one (the ``started``
    log line names it). Request lines and the start and stop lines are JSON, on stderr.
    """
    import uvicorn

    from fewshot.serve.app import ServeSettings, create_app

    settings = settings or ServeSettings()
    _configure_log()
    sock = _bind(host, port)
    try:
        clf, manifest = load_for_serving(model_dir, encoder=encoder, device=device,
                                         batch_size=batch_size)
        app = create_app(clf, settings, manifest=manifest)
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        if settings.api_key is None and not _is_loopback(host):
            log.warning(json.dumps({
                "event": "warning", "message": f"listening on {host} without an API key: "
                "anyone who can reach this port can use the model; pass --api-key"}))
        log.info(json.dumps({
            "event": "started", "url": f"http://{shown}:{bound[1]}", "model": str(model_dir),
            "labels": len(clf.classes_), "modality": clf.encoder_.modality,
            "docs": f"http://{shown}:{bound[1]}/docs", **settings.public()}))
        config = uvicorn.Config(app, host=host, port=bound[1], log_level="warning",
                                access_log=False, lifespan="on", timeout_graceful_shutdown=10)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again
        # for the handler it found: both end here as a normal stop (exit code 0).
        with _stop_on_sigterm(), contextlib.suppress(KeyboardInterrupt, _Stopped):
            uvicorn.Server(config).run(sockets=[sock])
        log.info(json.dumps({"event": "stopped"}))
    finally:
        sock.close()


class _Stopped(Exception):
    """SIGTERM, after uvicorn's graceful shutdown."""


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UsageError(f"--host {host} is not an address of this machine ({e.strerror}); "
                         "use 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces)") from None
    family, _, _, _, address = infos[0]
    try:
        return socket.create_server(address, family=family)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another "
                         "--port or stop what uses it") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _configure_log() -> None:
    """JSON lines from the ``fewshot.serve`` logger to stderr, once."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
