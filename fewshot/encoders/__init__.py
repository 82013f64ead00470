"""Encoders: frozen pretrained models that turn items into embeddings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from fewshot.encoders.base import Encoder, MissingTorchError, check_device, resolve_device
from fewshot.encoders.resolve import (
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_TEXT_ENCODER,
    ResolvedModel,
    resolve_image_model,
    resolve_text_model,
)

__all__ = [
    "DEFAULT_IMAGE_ENCODER",
    "DEFAULT_TEXT_ENCODER",
    "Encoder",
    "ImageEncoder",
    "MissingTorchError",
    "OnnxEncoder",
    "ResolvedModel",
    "TextEncoder",
    "check_device",
    "get_encoder",
    "guess_modality",
    "resolve_device",
    "resolve_image_model",
    "resolve_text_model",
]


def __getattr__(name: str) -> Any:
    # The concrete encoders import numpy/sklearn only; torch comes on first use.
    if name == "TextEncoder":
        from fewshot.encoders.text import TextEncoder

        return TextEncoder
    if name == "ImageEncoder":
        from fewshot.encoders.image import ImageEncoder

        return ImageEncoder
    if name == "OnnxEncoder":
        from fewshot.encoders.onnx import OnnxEncoder

        return OnnxEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_encoder(
    encoder: str | os.PathLike[str] | Encoder | None, modality: str, **kwargs: Any
) -> Encoder:
    """An encoder instance for ``modality`` from a name, an instance, or None (default)."""
    if isinstance(encoder, Encoder):
        if encoder.modality != modality:
            from fewshot.errors import UsageError

            raise UsageError(
                f"the data is {modality} but the encoder is a {encoder.modality} encoder; "
                f"pass a {modality} encoder"
            )
        return encoder
    if modality == "text":
        from fewshot.encoders.text import TextEncoder

        return TextEncoder(encoder or DEFAULT_TEXT_ENCODER, **kwargs)
    if modality == "image":
        from fewshot.encoders.image import ImageEncoder

        return ImageEncoder(encoder or DEFAULT_IMAGE_ENCODER, **kwargs)
    raise ValueError(f"unknown modality {modality!r}; expected 'text' or 'image'")


def guess_modality(items: Sequence[Any]) -> str:
    """``"text"`` for strings, ``"image"`` for paths and PIL images."""
    first = items[0]
    if isinstance(first, str):
        return "text"
    if isinstance(first, os.PathLike) or hasattr(first, "convert"):
        return "image"
    from fewshot.errors import UsageError

    raise UsageError(
        f"cannot tell text from images by a {type(first).__name__}; pass str for text, "
        "pathlib.Path or PIL images for images"
    )
