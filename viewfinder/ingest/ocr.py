"""Text inside images (signs, screenshots, labels) through Tesseract."""

from __future__ import annotations

import re

from PIL import Image

from ..errors import ViewfinderError

MIN_CONFIDENCE = 70  # Tesseract's per-word confidence (0-100); lower is mostly noise on photos


def read_text(image: Image.Image, min_confidence: int = MIN_CONFIDENCE) -> str:
    """The confidently recognised words, in reading order; '' when there are none."""
    try:
        import pytesseract
    except ImportError as exc:
        raise ViewfinderError(
            "OCR needs pytesseract: pip install viewfinder[captions], and apt-get install tesseract-ocr"
        ) from exc
    try:
        data = pytesseract.image_to_data(image.convert("L"), output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError as exc:
        raise ViewfinderError(
            "OCR needs the tesseract program: apt-get install tesseract-ocr tesseract-ocr-eng"
        ) from exc
    words = [
        w
        for w, c in zip(data["text"], data["conf"])
        if float(c) >= min_confidence and re.search(r"[A-Za-z0-9]{2,}", w)
    ]
    return " ".join(words)
