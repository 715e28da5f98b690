"""Project exceptions. Each message names the file or field and says what to do; faces print it
as one line (CLI) or a JSON error (API)."""

from __future__ import annotations

import os


class ViewfinderError(Exception):
    """Base class: anything the user can act on."""

    http_status = 400


class BadImageError(ViewfinderError):
    """An input that is not a usable image (empty, truncated, too large, not an image)."""

    http_status = 422


class ImageTooLargeError(BadImageError):
    http_status = 413


class UnsupportedMediaError(ViewfinderError):
    """A request body of a kind the API does not take."""

    http_status = 415


class ModelMismatchError(ViewfinderError):
    """The catalogue was built with another model: mixing embeddings would give garbage."""

    http_status = 409


class ModelSpecError(ViewfinderError):
    """A model spec that cannot be parsed or loaded."""


class QueryError(ViewfinderError):
    """A query with no usable parts, a bad weight, or a missing image."""


class NotFoundError(ViewfinderError):
    http_status = 404


class ForbiddenError(ViewfinderError):
    """An operation the configuration does not allow (e.g. indexing outside the allowed roots)."""

    http_status = 403


class BusyError(ViewfinderError):
    """The same operation is already running; wait for it."""

    http_status = 409


def shown_path(path: str) -> str:
    """A file name for messages, tables and JSON: bytes that are not valid UTF-8 (which os
    functions hand over as surrogate escapes) shown as \\xNN; the catalogue keeps the exact name."""
    return path if path.isascii() else os.fsencode(path).decode("utf-8", "backslashreplace")
