"""``fewshot serve``: a fitted model behind an HTTP API (FastAPI + uvicorn).

- :mod:`fewshot.serve.app`: :func:`create_app` (the endpoints, limits, API key,
  request log) and :class:`ServeSettings`;
- :mod:`fewshot.serve.batching`: :class:`MicroBatcher`, which groups the items of
  concurrent requests into one model call;
- :mod:`fewshot.serve.server`: :func:`serve_model` (load a folder, bind, run uvicorn).

FastAPI and uvicorn load only when one of these is used (``pip install
'fewshot[serve]'``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MicroBatcher", "ServeSettings", "create_app", "load_for_serving", "serve_model"]

_WHERE = {"MicroBatcher": "batching", "ServeSettings": "app", "create_app": "app",
          "load_for_serving": "server", "serve_model": "server"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'fewshot.serve' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"fewshot.serve.{_WHERE[name]}"), name)
