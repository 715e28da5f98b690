"""Project exceptions. Each message names the file or field and says what to do; faces print it
as one line (CLI) or a JSON error (API)."""

from __future__ import annotations

import errno
import os
import shutil


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


class StorageError(ViewfinderError):
    """The index folder cannot be written: disk full or read-only. What was committed is kept."""

    http_status = 507


def storage_error(where: object, exc: BaseException) -> StorageError | None:
    """The clear error for a write that failed for want of space or permission, else None."""
    text = str(exc).lower()
    if ("disk i/o error" in text or "unable to open" in text) and isinstance(where, (str, os.PathLike)):
        # what SQLite says when it cannot make or grow its WAL files: look at the disk itself
        if shutil.disk_usage(where).free < (1 << 20):
            text = "disk is full"
        elif not os.access(where, os.W_OK):
            text = "read-only"
    code = getattr(exc, "errno", None)
    if "full" in text or "no space" in text or code == errno.ENOSPC:
        return StorageError(
            f"{where}: the disk is full; free some space and run the same command again "
            "(everything indexed before is kept)"
        )
    if "readonly" in text or "read-only" in text or code in (errno.EACCES, errno.EROFS):
        return StorageError(
            f"{where}: the index folder cannot be written (read-only); make it writable or give "
            "--db another folder (everything indexed before is kept)"
        )
    return None


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
