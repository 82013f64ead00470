"""The FastAPI app of ``fewshot serve``: predictions over HTTP from a loaded classifier.

``POST /predict`` takes ``{"items": [...]}`` (texts; for an image model, images as
base64 strings) or, for an image model, a multipart upload of files in the field
``items``, and answers ``{"predictions": [...]}``, one row per item in the shape
``fewshot predict`` writes (:meth:`~fewshot.model.state.FittedModel.prediction_rows`).
Items of concurrent requests share model calls (:mod:`fewshot.serve.batching`).
``GET /health`` answers without a key; ``GET /info`` describes the model; the
OpenAPI docs are at ``/docs``.

Every error is a JSON object ``{"error": CODE, "message": "<problem>; <fix>"}``,
limits adding ``"limit"`` (the setting's name) and ``"max"`` (its value). Every
request is logged as one JSON line on the ``fewshot.serve`` logger.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import io
import json
import logging
import sys
import time
import traceback
import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from fewshot.errors import FewShotError
from fewshot.serve.batching import MicroBatcher, ShuttingDown

__all__ = ["ServeSettings", "create_app"]

log = logging.getLogger("fewshot.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The key of the per-request log record in the ASGI scope.
_LOG_KEY = "fewshot.log"
_OPEN_PATHS = frozenset({"/health"})


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching of a server. Each limit is refused with the setting's name.

    ``max_items``: items in one request (413). ``max_text_chars``: characters in
    one text (422). ``max_body_kb``: request body size in KiB (413).
    ``max_batch``: items per model call; ``max_wait_ms``: how long the first
    request of a batch waits for others to join it. ``api_key``: when set, every
    path but ``/health`` needs ``Authorization: Bearer <api_key>``.
    """

    max_items: int = 256
    max_text_chars: int = 10_000
    max_body_kb: int = 16_384
    max_batch: int = 256
    max_wait_ms: float = 5.0
    api_key: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_items", "max_text_chars", "max_body_kb", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key is empty; give a key or None for no key")

    def public(self) -> dict[str, Any]:
        """The settings without the key (for /info)."""
        out = asdict(self)
        out["api_key"] = self.api_key is not None
        return out


# -- request and response bodies (also the OpenAPI schema) -----------------------------
class PredictRequest(BaseModel):
    """Items to classify: texts, or for an image model base64-encoded image files
    (a ``data:image/...;base64,`` prefix is allowed)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[str] = Field(description="Texts, or base64 image files for an image model.",
                             examples=[["the parcel never arrived", "my screen stays black"]])


class Prediction(BaseModel):
    """One item's answer: ``label`` and ``score`` (single-label models) or ``labels``
    (multi-label models), and every class's probability."""

    label: str | None = None
    score: float | None = None
    labels: list[str] | None = None
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class ErrorBody(BaseModel):
    error: str = Field(description="A code: malformed_json, too_many_items, ...")
    message: str = Field(description="The problem and the fix, one line.")
    limit: str | None = Field(None, description="The limit exceeded, for limit errors.")
    max: int | None = Field(None, description="That limit's value.")


class _RequestError(Exception):
    """An answer for a bad request: status, code, message and extra fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def _error_response(scope: Scope, status: int, code: str, message: str,
                    **extra: Any) -> JSONResponse:
    record = scope.get(_LOG_KEY)
    if record is not None:
        record["error"] = code
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status,
                        headers=headers)


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
                 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
                 422: "invalid_request", 500: "internal_error", 503: "unavailable"}


# -- the app --------------------------------------------------------------------------
def create_app(clf: Any, settings: ServeSettings | None = None, *,
               manifest: dict[str, Any] | None = None) -> FastAPI:
    """A FastAPI app answering predictions of the fitted classifier ``clf``.

    ``manifest`` (the model folder's ``fewshot.json``) adds the folder's format and
    export figures to ``/info``. The model runs in one worker thread, fed by the
    micro-batcher; nothing else calls it, so ``clf`` need not be thread-safe.
    """
    settings = settings or ServeSettings()
    model = clf.model_
    modality = clf.encoder_.modality
    batcher = MicroBatcher(_model_call(clf), max_batch=settings.max_batch,
                           max_wait=settings.max_wait_ms / 1000.0)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="fewshot serve", lifespan=lifespan, version=_version(),
        description=f"Predictions of a few-shot {modality} classifier "
        f"({len(model.classes)} labels{', multi-label' if model.multi_label else ''}).",
    )
    app.state.batcher = batcher
    app.state.settings = settings

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no such path {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        return _error_response(request.scope, exc.status_code, code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error_response(request.scope, 422, "invalid_request", _first_error(exc.errors()))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error(json.dumps({"event": "error", "path": request.url.path,
                              "message": f"{type(exc).__name__}: {exc}",
                              "traceback": "".join(traceback.format_exception(exc))}))
        return _error_response(request.scope, 500, "internal_error",
                               "the server failed on this request; see its log")

    info = _info(clf, settings, manifest)

    @app.get("/health", summary="Liveness: answers without an API key.")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info", summary="The model: labels, encoder, format, export figures; "
             "the server's limits and batching.")
    async def model_info() -> dict[str, Any]:
        return {**info, "batching": {"max_batch": settings.max_batch,
                                     "max_wait_ms": settings.max_wait_ms,
                                     **batcher.stats.to_dict()}}

    error_responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": what} for status, what in (
            (400, "Malformed JSON."), (401, "Missing or wrong API key."),
            (413, "Too many items or too large a body (names the limit)."),
            (415, "Neither JSON nor (image models) multipart."),
            (422, "Wrong types, an empty list, a text too long, an unreadable image."))
    }

    @app.post(
        "/predict", summary="Labels and per-class probabilities for items.",
        response_model=PredictResponse, responses=error_responses,
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["items"],
                "properties": {"items": {"type": "array",
                                         "items": {"type": "string", "format": "binary"}}},
            }},
        }}},
    )
    async def predict(request: Request) -> Response:
        try:
            items = await _read_items(request, settings, modality)
        except _RequestError as e:
            return _error_response(request.scope, e.status, e.code, e.message, **e.extra)
        record = request.scope.get(_LOG_KEY)
        if record is not None:
            record["items"] = len(items)
        try:
            proba = await batcher.predict(items)
        except FewShotError as e:  # an item the encoder refuses
            return _error_response(request.scope, 422, "invalid_item", str(e))
        except ShuttingDown as e:
            return _error_response(request.scope, 503, "unavailable", str(e))
        rows = model.prediction_rows(proba, threshold=clf.threshold, min_labels=clf.min_labels)
        return Response(json.dumps({"predictions": rows}), media_type="application/json")

    app.add_middleware(_Gate, api_key=settings.api_key)
    return app


def _version() -> str:
    from fewshot._version import __version__

    return __version__


def _info(clf: Any, settings: ServeSettings, manifest: dict[str, Any] | None) -> dict[str, Any]:
    model = clf.model_
    # Where the weights lie on this machine stays private; export figures get their own key.
    saved = (manifest or {}).get("encoder", {})
    encoder = {k: v for k, v in saved.items() if k not in ("resolved_from", "export")}
    encoder.setdefault("name", clf.encoder_.name)
    encoder.setdefault("modality", clf.encoder_.modality)
    encoder.setdefault("id", clf.encoder_.id)
    out: dict[str, Any] = {
        "labels": [str(c) for c in model.classes],
        "multi_label": bool(model.multi_label),
        "modality": clf.encoder_.modality,
        "encoder": encoder,
        "format": {**{k: manifest[k] for k in ("format", "format_version", "fewshot_version")
                      if manifest and k in manifest},
                   "encoder": encoder.get("format", "torch")},
        "limits": {k: v for k, v in settings.public().items()
                   if k in ("max_items", "max_text_chars", "max_body_kb", "api_key")},
    }
    if saved.get("export"):  # what fewshot export measured: agreement with the original
        out["export"] = saved["export"]
    return out


def _model_call(clf: Any) -> Callable[[list[Any]], np.ndarray]:
    """``clf.predict_proba`` for the worker thread, library warnings logged as JSON."""

    def call(items: list[Any]) -> np.ndarray:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            proba = clf.predict_proba(items)
        for w in caught:
            log.warning(json.dumps({"event": "warning", "message": str(w.message)}))
        return np.asarray(proba)

    return call


# -- reading a request ----------------------------------------------------------------
async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused (413) as soon as it is known to exceed ``max_bytes``."""
    kb = max_bytes // 1024
    too_large = _RequestError(
        413, "body_too_large", f"the request body is larger than {kb} KiB; send fewer or "
        "smaller items per request (the server's --max-body-kb)", limit="max_body_kb", max=kb)
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise _RequestError(400, "bad_request", f"Content-Length '{length[:40]}' is not a "
                                "number; send a valid header") from None
        if declared > max_bytes:
            raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise _RequestError(400, "bad_request", "the client closed the connection before "
                            "the whole body arrived; send it again") from None
    return b"".join(chunks)


async def _read_items(request: Request, settings: ServeSettings, modality: str) -> list[Any]:
    """The request's items, checked against the limits; images decoded to PIL images."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = media == "application/json" or media.endswith("+json")
    is_multipart = media == "multipart/form-data"
    how = ("JSON: Content-Type: application/json and a body {\"items\": [...]}"
           if modality == "text" else "JSON {\"items\": [base64 images]} with Content-Type: "
           "application/json, or multipart/form-data with files in the field 'items'")
    if not (is_json or (is_multipart and modality == "image")):
        what = f"Content-Type '{media}'" if media else "no Content-Type"
        raise _RequestError(415, "unsupported_media_type", f"{what} is not accepted; send {how}")
    body = await _read_body(request, settings.max_body_kb * 1024)
    if is_multipart:
        files = await _multipart_files(request.headers, body)
        _check_count(len(files), settings)
        return await asyncio.to_thread(_decode_images, files, "file")
    try:
        parsed = PredictRequest.model_validate_json(body)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise _RequestError(400, "malformed_json", f"the body is not valid UTF-8 JSON "
                                f"({errors[0]['msg']}); send {how}") from None
        raise _RequestError(422, "invalid_request", f"{_first_error(errors)}; send {how}",
                            errors=[{"loc": list(err["loc"]), "msg": err["msg"]}
                                    for err in errors[:10]]) from None
    _check_count(len(parsed.items), settings)
    if modality == "text":
        limit = settings.max_text_chars
        long = next((i for i, t in enumerate(parsed.items) if len(t) > limit), None)
        if long is not None:
            raise _RequestError(
                422, "text_too_long", f"item {long} has {len(parsed.items[long]):,} characters, "
                f"more than {limit:,}; shorten or split it (the server's --max-text-chars)",
                limit="max_text_chars", max=limit)
        return list(parsed.items)
    raw = [_b64(s, i) for i, s in enumerate(parsed.items)]
    return await asyncio.to_thread(_decode_images, raw, "item")


def _check_count(n: int, settings: ServeSettings) -> None:
    if n == 0:
        raise _RequestError(422, "no_items", "items is empty; send at least one item")
    if n > settings.max_items:
        raise _RequestError(
            413, "too_many_items", f"{n:,} items in one request, more than {settings.max_items:,};"
            " split them over several requests (the server's --max-items)",
            limit="max_items", max=settings.max_items)


def _first_error(errors: Any) -> str:
    err = errors[0]
    where = ".".join(str(p) for p in err["loc"] if p != "body") or "the body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {err['msg']}{more}"


def _b64(text: str, i: int) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _RequestError(422, "bad_image", f"item {i} is not base64; send each image file "
                            "base64-encoded (base64 -w0 FILE)") from None


def _decode_images(raw: list[bytes], what: str) -> list[Any]:
    from PIL import Image

    out = []
    for i, data in enumerate(raw):
        try:
            with Image.open(io.BytesIO(data)) as im:
                out.append(im.convert("RGB"))
        except Exception as e:  # PIL raises many types for broken files
            reason = str(e) or type(e).__name__
            raise _RequestError(422, "bad_image", f"{what} {i} is not an image PIL can read "
                                f"({reason[:120]}); send PNG, JPEG or another image file") from None
    return out


class _InMemoryParser(MultiPartParser):
    """Starlette's multipart parser, keeping files in memory: the body is already
    bounded by ``max_body_kb`` and held in memory."""

    spool_max_size = sys.maxsize


async def _multipart_files(headers: Headers, body: bytes) -> list[bytes]:
    async def stream() -> Any:
        yield body

    parser = _InMemoryParser(headers, stream(), max_files=sys.maxsize, max_fields=1000,
                             max_part_size=len(body) + 1)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise _RequestError(400, "bad_request", f"malformed multipart body ({e.message}); "
                            "upload files as -F items=@image.png") from None
    files, other = [], []
    for key, value in form.multi_items():
        if key == "items" and not isinstance(value, str):
            files.append(await value.read())
        else:
            other.append(key)
    await form.close()
    if other:
        raise _RequestError(422, "invalid_request", f"unexpected form field '{other[0]}'; "
                            "upload image files in the field 'items' only")
    return files


# -- authentication and the request log -------------------------------------------------
class _Gate:
    """Outermost ASGI layer: the API key check (all paths but /health) and one JSON log
    line per HTTP request (method, path, status, items, milliseconds)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self._key = api_key.encode() if api_key is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        record: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "method": scope["method"], "path": scope["path"]}
        scope[_LOG_KEY] = record

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
            await send(message)

        try:
            if self._key is not None and scope["path"] not in _OPEN_PATHS \
                    and not self._authorized(scope):
                response = _error_response(
                    scope, 401, "unauthorized", "missing or wrong API key; send the header "
                    "'Authorization: Bearer <key>' with the server's --api-key")
                await response(scope, receive, send_logged)
            else:
                await self.app(scope, receive, send_logged)
        finally:
            record["ms"] = round((time.perf_counter() - began) * 1000, 2)
            client = scope.get("client")
            if client:
                record["client"] = f"{client[0]}:{client[1]}"
            record.setdefault("status", 500)
            log.info(json.dumps({"event": "request", **record}))

    def _authorized(self, scope: Scope) -> bool:
        assert self._key is not None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return hmac.compare_digest(token.strip(), self._key)
        return False
