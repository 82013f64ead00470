"""``fewshot serve``: predictions over HTTP (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fewshot.cli._common import BatchOpt, DeviceOpt, ModelEncoderOpt, handle_errors


@handle_errors
def serve(
    model_dir: Annotated[
        Path, typer.Argument(metavar="MODEL_DIR",
                             help="Model folder from fewshot train or fewshot export.")
    ],
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; 0.0.0.0 for every interface "
                          "(then pass --api-key).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on; 0 picks a "
                          "free one (the started log line names it).")
    ] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="FEWSHOT_API_KEY",
                     help="Require 'Authorization: Bearer KEY' on every path but /health. "
                     "Prefer the environment variable: a command line shows in ps.",
                     show_default="none: no key"),
    ] = None,
    max_items: Annotated[
        int, typer.Option("--max-items", min=1, help="Items in one request; more is a 413.")
    ] = 256,
    max_text_chars: Annotated[
        int, typer.Option("--max-text-chars", min=1,
                          help="Characters in one text; more is a 422.")
    ] = 10_000,
    max_body_kb: Annotated[
        int, typer.Option("--max-body-kb", min=1,
                          help="Request body size in KiB; more is a 413.")
    ] = 16_384,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1,
                          help="Items of concurrent requests joined into one model call.")
    ] = 256,
    max_wait_ms: Annotated[
        float, typer.Option("--max-wait-ms", min=0.0,
                            help="How long a request waits for others to join its batch.")
    ] = 5.0,
    batch_size: BatchOpt = 32,
    encoder: ModelEncoderOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Serve the model in MODEL_DIR over HTTP: POST /predict, GET /health, GET /info,
    docs at /docs.

    POST /predict takes {"items": [...]}: texts, or for an image model base64 image
    files (or a multipart upload of files in the field 'items'); it answers
    {"predictions": [...]}, one row per item as fewshot predict writes them. Items of
    concurrent requests are joined into one model call of up to --max-batch items,
    each request waiting at most --max-wait-ms for others. Logs one JSON line per
    request on stderr. Stop with Ctrl-C.
    """
    from fewshot.serve.app import ServeSettings
    from fewshot.serve.server import serve_model

    if api_key is not None and not api_key:
        from fewshot.errors import UsageError

        raise UsageError("--api-key is empty (or FEWSHOT_API_KEY is set but empty); give a "
                         "key or unset it")
    settings = ServeSettings(
        max_items=max_items, max_text_chars=max_text_chars, max_body_kb=max_body_kb,
        max_batch=max_batch, max_wait_ms=max_wait_ms, api_key=api_key,
    )
    serve_model(model_dir, host=host, port=port, settings=settings, encoder=encoder,
                device=device, batch_size=batch_size)
