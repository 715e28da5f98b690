"""Find the image files under a folder."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import shown_path
from ..images import EXTENSIONS


@dataclass(frozen=True)
class FileStat:
    path: str  # absolute, resolved
    size: int
    mtime: float


def scan(folder: Path, skipped: list[tuple[str, str]] | None = None) -> list[FileStat]:
    """Every file with an image extension below `folder`, hidden folders skipped, sorted by path.
    Links that lead nowhere (dangling, or a loop) are added to `skipped` as (path, reason);
    links to folders are not followed, so that a loop cannot make the walk endless."""
    out: list[FileStat] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if skipped is not None and (reason := _broken_link(full)):
                skipped.append((full, reason))
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in EXTENSIONS:
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:
                if skipped is not None and (reason := _broken_link(full)):
                    skipped.append((full, reason))
                continue  # vanished since the walk listed it: nothing to index
            out.append(FileStat(full, st.st_size, st.st_mtime))
    out.sort(key=lambda f: f.path)
    return out


def _broken_link(path: str) -> str | None:
    """Why a symbolic link cannot be followed, as a one-line message; None if it can (or if
    `path` is not a link)."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as exc:
        name = shown_path(path)
        if exc.errno == errno.ELOOP:
            return f"{name}: a symbolic link loop; point the link at a real file or delete it"
        return (
            f"{name}: a symbolic link to {shown_path(os.readlink(path))}, which does not exist; "
            "fix the link or delete it"
        )
    return None
