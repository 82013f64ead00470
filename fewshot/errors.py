"""Exceptions raised by fewshot.

Every expected failure is a :class:`FewShotError` whose message is one line that
names the problem and the fix. The CLI prints that line and exits with
``exit_code``; Python callers can catch the class they care about::

    FewShotError                      exit 1 unless noted
    ├── UsageError                    exit 2: a bad option, an output that exists or is an input
    ├── DataError                     a missing, empty, malformed or unsuitable data file
    │   └── ImageReadError            an image that cannot be decoded
    ├── EncoderNotFoundError          an encoder name that resolves nowhere
    └── ModelError                    a model folder that cannot be used
        └── EncoderMismatchError      the encoder no longer matches the saved model

``DataError`` also subclasses ``ValueError`` and ``EncoderNotFoundError`` and
``ModelError`` subclass ``OSError``/``ValueError``, so generic handlers still work.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "EncoderMismatchError",
    "EncoderNotFoundError",
    "FewShotError",
    "ImageReadError",
    "ModelError",
    "UsageError",
]


class FewShotError(Exception):
    """Base class of every expected fewshot failure."""

    exit_code = 1


class UsageError(FewShotError, ValueError):
    """The command or call was given something it cannot use."""

    exit_code = 2


class DataError(FewShotError, ValueError):
    """A data file is missing, empty or malformed."""


class ImageReadError(DataError):
    """An image file cannot be opened or decoded."""

    def __init__(self, path: object, reason: str = "") -> None:
        self.path = str(path)
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"cannot read image {self.path}{detail}; remove or replace the file, "
            "or pass --skip-bad-images to leave it out with a warning"
        )


class EncoderNotFoundError(FewShotError, OSError):
    """An encoder name could not be resolved to local files or the hub.

    ``tried`` lists the places looked in, when resolution got that far.
    """

    tried: tuple[str, ...] = ()


class ModelError(FewShotError, ValueError):
    """A saved model folder is incomplete, corrupt or from a newer format."""


class EncoderMismatchError(ModelError):
    """The encoder available now is not the one the model was trained with."""
