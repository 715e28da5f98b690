import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from viewfinder.config import Config
from viewfinder.errors import BadImageError, ImageTooLargeError
from viewfinder.images import decode_bytes

LIMIT = Config.max_pixels


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA", "CMYK", "L", "1", "I;16"])
def test_every_mode_becomes_rgb(mode):
    base = (
        Image.new("RGB", (20, 10), (200, 30, 30)).convert(mode)
        if mode != "I;16"
        else Image.fromarray((np.arange(200).reshape(10, 20) * 300).astype(np.uint16))
    )
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode == "I;16" else "PNG"
    out = decode_bytes(_bytes(base, fmt), f"x.{fmt.lower()}", LIMIT)
    assert out.image.mode == "RGB" and out.image.size == (20, 10)


def test_transparency_goes_on_white():
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = decode_bytes(_bytes(im, "PNG"), "t.png", LIMIT).image
    assert out.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_applied():
    im = Image.new("RGB", (30, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    out = decode_bytes(_bytes(im, "JPEG", exif=exif), "o.jpg", LIMIT)
    assert out.image.size == (10, 30) and (out.width, out.height) == (30, 10)


def test_gif_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r, g, b = decode_bytes(buf.getvalue(), "a.gif", LIMIT).image.getpixel((0, 0))
    assert r > 200 and b < 50


def test_bad_inputs_have_clear_reasons():
    with pytest.raises(BadImageError, match="empty file"):
        decode_bytes(b"", "zero.jpg", LIMIT)
    with pytest.raises(BadImageError, match="not an image"):
        decode_bytes(b"hello, I am text", "notes.jpg", LIMIT)
    good = _bytes(Image.new("RGB", (64, 64), "green"), "JPEG")
    with pytest.raises(BadImageError, match="truncated or corrupt"):
        decode_bytes(good[: len(good) // 2], "half.jpg", LIMIT)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: what a decompression bomb looks like to the reader."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_refused_before_decoding():
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        decode_bytes(_png_header_only(20_000, 20_000), "bomb.png", LIMIT)
    with pytest.raises(ImageTooLargeError):
        decode_bytes(_bytes(Image.new("RGB", (100, 100)), "PNG"), "small.png", max_pixels=5_000)
