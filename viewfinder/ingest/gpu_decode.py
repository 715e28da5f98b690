"""JPEG decoding on the GPU (nvJPEG through torchvision) for the indexing pipeline.

Measured on an H100 (docs/benchmarks.md): Pillow in 15 worker processes fed ViT-B/32 about 870
images/s; reading the bytes in a thread pool of the main process and decoding the batch with
nvJPEG fed it about 4,500. Decoding happens where the model is, so there are no worker
processes and no pickling of bytes. Other formats, and JPEGs nvJPEG refuses, go through Pillow."""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from PIL import Image

from ..errors import BadImageError, ImageTooLargeError
from ..store import NewImage
from .decode import read_image
from .walk import FileStat

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")


@dataclass
class _Raw:
    stat: FileStat
    data: bytes | None
    width: int = 0
    height: int = 0
    error: str | None = None
    sha256: str = ""


def _read(stat: FileStat, max_pixels: int) -> _Raw:
    """Bytes and header size of one file (runs in the reader threads: file reads release the GIL)."""
    try:
        data = Path(stat.path).read_bytes()
    except OSError as exc:
        return _Raw(stat, None, error=f"{stat.path}: unreadable ({exc.strerror or exc}); check its permissions")
    if not data:
        return _Raw(stat, None, error=f"{stat.path}: empty file (0 bytes); delete it or replace it with a real image")
    try:
        with Image.open(io.BytesIO(data)) as im:  # header only: refuse bombs before any decoding
            w, h = im.size
    except Exception:  # noqa: BLE001  (Pillow's fallback below gives the precise reason)
        return _Raw(stat, data)
    if w * h > max_pixels:
        return _Raw(stat, None, error=f"{stat.path}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,}; "
                                      "raise max_pixels (--max-pixels) to index it")
    return _Raw(stat, data, w, h, sha256=hashlib.sha256(data).hexdigest())  # hashed here, off the GPU thread


def resize_crop(images, side: int, mode: str = "bicubic"):
    """Shorter side to `side` (antialiased) and a centre crop, on the images' device: uint8 (3,H,W) -> float (N,3,side,side) in 0..255."""
    import torch
    import torch.nn.functional as F

    out = []
    for im in images:
        h, w = im.shape[-2:]
        scale = side / min(h, w)
        size = (max(side, round(h * scale)), max(side, round(w * scale)))
        x = F.interpolate(im[None].float(), size=size, mode=mode, antialias=True, align_corners=False)
        top, left = (size[0] - side) // 2, (size[1] - side) // 2
        out.append(x[..., top : top + side, left : left + side].clamp(0, 255))
    return torch.cat(out)


def gpu_batches(files: Sequence[FileStat], batch_size: int, device: str, side: int, mean, std, max_pixels: int,
                fallback: Callable, threads: int = 8) -> Iterator[tuple[object, list[NewImage]]]:
    """Yield (normalised pixel batch on `device` or None, records) like the DataLoader path does.
    `fallback(image) -> uint8 CHW tensor` is the model's own Pillow transform for non-JPEG files."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    with ThreadPoolExecutor(threads) as pool:
        pending = pool.map(lambda f: _read(f, max_pixels), batches[0]) if batches else iter(())
        for i in range(len(batches)):
            raws = list(pending)
            if i + 1 < len(batches):
                pending = pool.map(lambda f: _read(f, max_pixels), batches[i + 1])
            records: list[NewImage] = []
            jpeg_raw, jpeg_rec, other = [], [], []
            for raw in raws:
                st = raw.stat
                if raw.error:
                    records.append(NewImage(st.path, st.size, st.mtime, error=raw.error))
                elif st.path.lower().endswith(JPEG_SUFFIXES) and raw.width:
                    jpeg_raw.append(raw)
                else:
                    other.append(raw)
            tensors = []
            if jpeg_raw:
                try:
                    decoded = decode_jpeg([torch.frombuffer(bytearray(r.data), dtype=torch.uint8) for r in jpeg_raw],
                                          mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
                    tensors.append(resize_crop(decoded, side))
                    jpeg_rec = [NewImage(r.stat.path, r.stat.size, r.stat.mtime, r.sha256, r.width, r.height)
                                for r in jpeg_raw]
                except RuntimeError:  # a JPEG nvJPEG cannot take (CMYK, progressive oddities): Pillow instead
                    other = jpeg_raw + other
            rest = []
            for raw in other:
                st = raw.stat
                try:
                    dec = read_image(Path(st.path), max_pixels)
                    rest.append(fallback(dec.image).to(device).float())
                    jpeg_rec.append(NewImage(st.path, st.size, st.mtime, dec.sha256, dec.width, dec.height))
                except (BadImageError, ImageTooLargeError) as exc:
                    records.append(NewImage(st.path, st.size, st.mtime, error=str(exc)))
            if rest:
                tensors.append(torch.stack(rest))
            records = jpeg_rec + records  # records with vectors first, in the order of the pixel rows
            pixels = (torch.cat(tensors) / 255.0 - m) / s if tensors else None
            yield pixels, records
