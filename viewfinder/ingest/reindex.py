"""Move an index to another model without a moment of no search.

The new index is built beside the live one (`DB.next`), from the live catalogue's files, stored
texts, captions and OCR text, while the live one keeps answering. A rerun resumes: files already
in `DB.next` with the same size and mtime are skipped. When every file is done, two renames
switch them (`DB` -> `DB.previous`, `DB.next` -> `DB`); `finish_switch` completes a switch that a
crash cut between the renames, so the index folder is never left missing."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..store import Collection, Store
from .metadata import fill_metadata
from .pipeline import EmbedOptions, IndexPlan, IndexReport, embed_files
from .walk import FileStat

DONE_KEY = "reindex_done"


def next_folder(db: Path) -> Path:
    return db.with_name(db.name + ".next")


def previous_folder(db: Path) -> Path:
    return db.with_name(db.name + ".previous")


def finish_switch(db: Path) -> None:
    """Complete a switch cut short between its two renames (DB gone, a finished DB.next there)."""
    pending = next_folder(db)
    if not db.exists() and (pending / "catalog.sqlite").exists():
        pending.rename(db)


def rebuild_into(live: Store, target: Store, encoder, options: EmbedOptions) -> IndexReport:
    """Embed every image of `live` (that still has its file) and every stored text into `target`
    with `encoder`, then copy the captions and OCR text and read the photos' headers."""
    import time

    started = time.perf_counter()
    images = [r for r in live.catalog.images_under("").values() if r.error is None]
    done = target.catalog.images_under("")
    live_paths = {r.path for r in images}
    stale = [rec.id for path, rec in done.items() if path not in live_paths]  # gone since a cut run
    if stale:
        target.catalog.delete_images(stale)
        index = target.vectors(Collection.IMAGES)
        index.remove(stale)
        target.note_change(Collection.IMAGES, index)
    plan = IndexPlan(
        to_embed=[
            FileStat(r.path, r.size, r.mtime)
            for r in images
            if not (r.path in done and done[r.path].size == r.size and done[r.path].mtime == r.mtime)
            and Path(r.path).is_file()
        ]
    )
    plan.replace_ids = {f.path: done[f.path].id for f in plan.to_embed if f.path in done}
    report = IndexReport(scanned=len(images), unchanged=len(images) - len(plan.to_embed))
    embed_files(plan, report, target, encoder, options)
    for source, texts in live.catalog.texts_by_source().items():
        for i in range(0, len(texts), 256):
            chunk = texts[i : i + 256]
            target.catalog.add_texts(chunk, encoder.encode_texts(chunk), source)
    new_ids = {path: rec.id for path, rec in target.catalog.images_under("").items()}
    by_source: dict[str, list[tuple[int, str, float | None]]] = {}
    ocr = []
    for r in images:
        if r.path in new_ids and r.caption is not None:
            by_source.setdefault(r.caption_source or "caption", []).append(
                (new_ids[r.path], r.caption, r.caption_confidence)
            )
        if r.path in new_ids and r.ocr_text is not None:
            ocr.append((new_ids[r.path], r.ocr_text))
    for source, items in by_source.items():
        target.catalog.set_captions(items, source)
    target.catalog.set_ocr(ocr)
    fill_metadata(target.catalog)  # dates, cameras, places: from the headers, as `index` does
    report.seconds = time.perf_counter() - started
    return report


def switch(db: Path) -> None:
    """DB.next becomes DB; the old index is kept as DB.previous (one level: an older one goes)."""
    previous = previous_folder(db)
    if previous.exists():
        shutil.rmtree(previous)
    db.rename(previous)
    next_folder(db).rename(db)
