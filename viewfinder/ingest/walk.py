"""Find the image files under a folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..images import EXTENSIONS


@dataclass(frozen=True)
class FileStat:
    path: str  # absolute, resolved
    size: int
    mtime: float


def scan(folder: Path) -> list[FileStat]:
    """Every file with an image extension below `folder`, hidden folders skipped, sorted by path."""
    out: list[FileStat] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in EXTENSIONS:
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:
                continue  # vanished or a dangling link: nothing to index
            out.append(FileStat(full, st.st_size, st.st_mtime))
    out.sort(key=lambda f: f.path)
    return out
