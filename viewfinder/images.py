"""Read one image file into an RGB PIL image, or say precisely why it cannot be used."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from blake3 import blake3  # imported here, not when first needed: see load_codecs
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadImageError, ImageTooLargeError, shown_path

EXTENSIONS = {
    ".jpg",
    ".jpeg",
    ".jpe",
    ".png",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
}
_HEIF_READY = False
# JPEGs are decoded at the smallest DCT scale that still gives this many pixels a side: twice the
# usual 224 model input, so the resize that follows keeps its quality.
DRAFT_SIZE = 448


def load_codecs() -> None:
    """Finish importing Pillow's format plugins (and pillow-heif, where installed) in this
    process, waiting for another thread's import of one to finish. Called before decode workers
    are forked: a worker forked while another thread was importing a plugin (for the first image
    a search request opens, say) would wait forever for that import's lock, which no thread of
    the worker holds (tests/test_reliability.py). BLAKE3, which the workers hash with, is
    imported with this module for the same reason."""
    Image.init()
    enable_heif()


def enable_heif() -> bool:
    """Register the HEIC/AVIF opener when pillow-heif is installed (once per process)."""
    global _HEIF_READY
    if not _HEIF_READY:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _HEIF_READY = True
        except ImportError:
            return False
    return True


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image
    content_hash: str
    width: int  # of the file, before any draft downscaling
    height: int


# Content hashes are BLAKE3, written "blake3:<hex>": a third of SHA-256's time on one core, and on
# a GPU host the readers hash every byte of every phone photo (2 GB/s between them). Catalogues
# from before 2026-11-26 hold bare SHA-256 hex; a file is checked against those with SHA-256.
HASH_PREFIX = "blake3:"


def _hasher(like: str | None = None):
    """(a new hash object, the prefix its hex digest is written with): BLAKE3, or SHA-256 where
    `like` is a stored SHA-256."""
    if like is not None and not like.startswith(HASH_PREFIX):
        return hashlib.sha256(), ""
    return blake3(), HASH_PREFIX


def content_hash(data) -> str:
    """The content hash of `data` (bytes or any buffer)."""
    h, prefix = _hasher()
    h.update(data)
    return prefix + h.hexdigest()


def content_hash_file(path: Path, like: str | None = None) -> str:
    """The file's content hash, in the algorithm of `like` (a stored hash) when given."""
    h, prefix = _hasher(like)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return prefix + h.hexdigest()


def decode_bytes(data: bytes, name: str, max_pixels: int, draft_size: int | None = None) -> DecodedImage:
    """Decode and normalise: EXIF orientation applied, first frame only, any mode to RGB
    (transparency composited on white, 16-bit and float scaled to 8 bits)."""
    if not data:
        raise BadImageError(f"{name}: empty file (0 bytes); delete it or replace it with a real image")
    digest = content_hash(data)
    if Path(name).suffix.lower() in (".heic", ".heif", ".avif"):
        enable_heif()
    try:
        # Pillow's own bomb check (at twice its MAX_IMAGE_PIXELS) would overrule a raised
        # max_pixels; check_pixels below decides instead, from the header, before decoding.
        Image.MAX_IMAGE_PIXELS = None
        im = Image.open(io.BytesIO(data))
        width, height = im.size
        check_pixels(name, width, height, max_pixels)
        if draft_size and im.format == "JPEG":
            im.draft("RGB", (draft_size, draft_size))  # decode at reduced scale: far less work
        im.seek(0)
        im.load()
        im = ImageOps.exif_transpose(im) or im
        rgb = to_rgb(im)
    except BadImageError:
        raise
    except UnidentifiedImageError as exc:
        raise BadImageError(
            f"{name}: not an image Pillow can read; remove it or convert it to JPEG/PNG"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(
            f"{name}: truncated or corrupt image ({exc}); re-export or re-download it"
        ) from exc
    return DecodedImage(rgb, digest, width, height)


def check_pixels(name: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse an image bigger than max_pixels, from its header, before decoding it."""
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,}; "
            "raise max_pixels (--max-pixels) to index it"
        )


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def read_image(path: Path, max_pixels: int, draft_size: int | None = None) -> DecodedImage:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadImageError(
            f"{shown_path(str(path))}: unreadable ({exc.strerror or exc}); check its permissions"
        ) from exc
    return decode_bytes(data, shown_path(str(path)), max_pixels, draft_size)
