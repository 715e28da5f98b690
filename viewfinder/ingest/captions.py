"""Caption and OCR passes over the catalogue: batch by batch, each batch committed, so an
interrupted pass resumes where it stopped (images already done are skipped)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import BadImageError
from ..images import read_image
from ..query.confidence import load_confidence, term_confidence
from ..store import Store
from .ocr import read_text

log = logging.getLogger(__name__)


@dataclass
class CaptionReport:
    captioned: int = 0
    ocr_read: int = 0
    ocr_with_text: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def caption_images(
    store: Store,
    captioner,
    encoder=None,
    *,
    max_pixels: int,
    overwrite: bool = False,
    ocr: bool = False,
    captions: bool = True,
    batch_size: int = 32,
    progress: bool = True,
    on_error: Callable[[str], None] | None = None,
) -> CaptionReport:
    """Caption every uncaptioned image (and, with ocr=True, read the text in it). Captions also
    go into the texts collection (source "caption"), so image -> text search ranks them too."""
    import time

    from tqdm import tqdm

    started = time.perf_counter()
    report = CaptionReport()
    catalog = store.catalog
    # the vocabulary captioner's captions are judged by its model's calibrated confidence
    judge = (
        load_confidence(captioner.encoder.calibration_path())
        if hasattr(captioner, "caption_vectors_with_terms")
        else None
    )
    passes = (["caption"] if captions else []) + (["ocr"] if ocr else [])
    for what in passes:
        total = catalog.count_images()
        bar = tqdm(
            total=total,
            desc="captioning" if what == "caption" else "reading text",
            unit="img",
            disable=not progress,
        )
        last = 0
        while True:
            batch = catalog.images_needing(what, overwrite=overwrite, limit=batch_size, after=last)
            if not batch:
                break
            last = batch[-1].id
            if what == "caption" and judge is not None:
                # the vocabulary captioner works from the stored embeddings: no decoding at all
                vecs = catalog.image_vectors([r.id for r in batch], store.dim or 0)
                stacked, reference = np.stack([vecs[r.id] for r in batch]), store.sample("images")
                made, terms = captioner.caption_vectors_with_terms(stacked, reference)
                sure = [term_confidence(judge, *term) for term in terms]
                done = [(r.id, c, conf) for r, c, conf in zip(batch, made, sure)]
            else:
                images, ok = [], []
                for rec in batch:
                    try:
                        images.append(read_image(Path(rec.path), max_pixels).image)
                        ok.append(rec)
                    except BadImageError as exc:
                        report.failed.append((rec.path, str(exc)))
                        (on_error or log.warning)(str(exc))
                texts = captioner.caption(images) if what == "caption" else [read_text(im) for im in images]
                done = [(r.id, t, None) for r, t in zip(ok, texts)]
            if what == "caption":
                catalog.set_captions(done, captioner.spec)
                report.captioned += len(done)
                if encoder is not None and done:
                    unique = list(dict.fromkeys(c for _, c, _ in done))
                    catalog.add_texts(unique, encoder.encode_texts(unique), "caption")
            else:
                catalog.set_ocr([(i, t) for i, t, _ in done])
                report.ocr_read += len(done)
                report.ocr_with_text += sum(1 for _, t, _ in done if t)
            bar.update(len(batch))
        bar.close()
    report.seconds = time.perf_counter() - started
    return report
