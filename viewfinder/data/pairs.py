"""Image-caption pairs from a user's own data: a folder with a .txt caption beside each image,
or a CSV with `path,caption` columns (paths relative to the CSV)."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import ViewfinderError
from ..images import EXTENSIONS
from .datasets import DATASETS, ImageTextPair, load_dataset


def pairs_from_folder(folder: Path) -> list[ImageTextPair]:
    pairs = []
    for img in sorted(folder.rglob("*")):
        if img.suffix.lower() not in EXTENSIONS:
            continue
        txt = img.with_suffix(".txt")
        if txt.exists():
            caption = txt.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            if caption and caption[0].strip():
                rel = img.relative_to(folder)
                pairs.append(
                    ImageTextPair(
                        f"folder/{rel}",
                        caption[0].strip(),
                        rel.parts[0] if len(rel.parts) > 1 else "",
                        "file",
                        str(img),
                    )
                )
    return pairs


def pairs_from_csv(path: Path) -> list[ImageTextPair]:
    pairs = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "caption"} <= set(reader.fieldnames):
            raise ViewfinderError(f"{path}: the CSV needs a header with 'path' and 'caption' columns")
        for line, row in enumerate(reader, start=2):
            img = (path.parent / row["path"]).resolve()
            if not img.exists():
                raise ViewfinderError(
                    f"{path}:{line}: image {row['path']} does not exist; fix the path or drop the row"
                )
            if row["caption"].strip():
                pairs.append(
                    ImageTextPair(f"csv/{row['path']}", row["caption"].strip(), "", "file", str(img))
                )
    return pairs


def load_pairs(data: str) -> list[ImageTextPair]:
    """A dataset name, a folder of images with .txt captions, or a CSV file."""
    if data in DATASETS or data == "openclipart-held-out":
        return load_dataset(data)
    path = Path(data).expanduser()
    if path.is_dir():
        pairs = pairs_from_folder(path)
    elif path.suffix.lower() == ".csv" and path.is_file():
        pairs = pairs_from_csv(path)
    else:
        raise ViewfinderError(
            f"{data}: give a dataset name ({', '.join(DATASETS)}), a folder of images with .txt captions, "
            "or a CSV"
        )
    if len(pairs) < 4:
        raise ViewfinderError(f"{data}: found {len(pairs)} image-caption pairs; training needs at least 4")
    return pairs
