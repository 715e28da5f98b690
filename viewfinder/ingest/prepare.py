"""One file -> what the indexing pipeline needs of it: its catalogue record and the model's
input tensor, or the record with the reason it cannot be used. Shared by the Pillow worker path,
the GPU path's Pillow fallback and the Ray actors."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import Callable

from ..errors import BadImageError, shown_path
from ..images import DRAFT_SIZE, read_image
from ..store import NewImage
from .walk import FileStat


def decode_for_model(
    f: FileStat, transform: Callable, max_pixels: int, draft_size: int | None = DRAFT_SIZE
) -> tuple[NewImage, object]:
    """(record, model input tensor), or (record with the failure reason, None)."""
    try:
        dec = read_image(Path(f.path), max_pixels, draft_size)
        tensor = transform(dec.image)
    except BadImageError as exc:
        return NewImage(f.path, f.size, f.mtime, error=str(exc)), None
    except Exception as exc:  # a transform or codec bug must not stop the run either
        return NewImage(
            f.path,
            f.size,
            f.mtime,
            error=f"{shown_path(f.path)}: cannot be processed ({type(exc).__name__}: {exc})",
        ), None
    return NewImage(f.path, f.size, f.mtime, dec.content_hash, dec.width, dec.height), tensor


def die_with_parent(parent: int, _worker_id: int = 0) -> None:
    """Decode-worker initialiser: on Linux the kernel kills this decode worker the moment its
    parent dies (kill -9 included), instead of it lingering until torch's watchdog notices."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
