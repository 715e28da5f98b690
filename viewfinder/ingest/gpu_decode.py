"""JPEG decoding on the GPU (nvJPEG through torchvision) for the indexing pipeline.

Decode workers, each a process with its own nvJPEG decoder, take a batch of files at a time:
read them (checking headers against the pixel limit, noting the EXIF orientation, hashing),
decode the JPEGs on the GPU, turn them upright, resize and crop them there, decode other formats
with Pillow, and hand back one uint8 batch in shared memory. The main process copies it to the
GPU and normalises it in a thread of its own, on a side CUDA stream, while the caller runs the
model on the previous batch.

Why processes: torchvision runs one nvJPEG decode at a time per process and returns only when
it is done; on an H100 one process decoded 8,826 images/s, three at once 19,209 together
(docs/benchmarks.md). Threads in one process measured 2,200-3,100 files/s for the reading alone:
the per-file Python work serialises on the GIL."""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

from PIL import Image

from ..errors import ImageTooLargeError
from ..store import NewImage
from .decode import check_pixels
from .pipeline import decode_for_model
from .walk import FileStat

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")


@dataclass
class DecodedBatch:
    """What a decode worker hands back for one batch."""
    pixels: object  # uint8 (N,3,side,side) tensor in shared memory, or None
    records: list[NewImage]  # the first N have rows in `pixels`, in order; then the failures
    seconds: dict[str, float] = field(default_factory=dict)  # the worker's time per step


def _read_jpeg(stat: FileStat, slot: memoryview, max_pixels: int) -> tuple[NewImage, int] | None:
    """Check a JPEG's header, read it into `slot` (sized at scan time) and hash it there, with no
    copy of the bytes; return the record and the EXIF orientation. None when Pillow should take
    it (not a plain JPEG, or changed on disk)."""
    try:
        with open(stat.path, "rb") as fh:
            with Image.open(fh) as im:  # header only: refuse bombs before any decoding
                w, h = im.size
                if im.format != "JPEG" or im.mode not in ("RGB", "L"):
                    return None
                orientation = im.getexif().get(EXIF_ORIENTATION, 1)
            fh.seek(0)
            if fh.readinto(slot) != len(slot) or fh.read(1):
                return None
    except Exception:  # noqa: BLE001  (Pillow gives the precise reason)
        return None
    try:
        check_pixels(stat.path, w, h, max_pixels)
    except ImageTooLargeError as exc:
        return NewImage(stat.path, stat.size, stat.mtime, error=str(exc)), 1
    return NewImage(stat.path, stat.size, stat.mtime, hashlib.sha256(slot).hexdigest(), w, h), orientation


EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the tensor operation on (C,H,W) that shows the image upright, as Pillow's
# ImageOps.exif_transpose does (6 and 8 are the phone camera's quarter turns)
_UPRIGHT = {
    2: lambda x: x.flip(-1),
    3: lambda x: x.flip(-2, -1),
    4: lambda x: x.flip(-2),
    5: lambda x: x.transpose(-2, -1),
    6: lambda x: x.rot90(-1, (-2, -1)),
    7: lambda x: x.transpose(-2, -1).flip(-2, -1),
    8: lambda x: x.rot90(1, (-2, -1)),
}


def upright(image, orientation: int):
    """A decoded (C,H,W) image turned the way its EXIF orientation says it is shown."""
    turn = _UPRIGHT.get(orientation)
    return turn(image) if turn else image


def read_jpegs(files: Sequence[FileStat], max_pixels: int):
    """Read a batch's plain JPEGs into one buffer with no copies: (buffer, spans, records,
    orientations, files for Pillow, refused records)."""
    import torch

    jpeg = [f for f in files if f.path.lower().endswith(JPEG_SUFFIXES)]
    buf = torch.empty(sum(f.size for f in jpeg), dtype=torch.uint8)
    view = memoryview(buf.numpy())
    spans, records, orientations, others, failed = [], [], [], [], []
    start = 0
    for f in files:
        if not f.path.lower().endswith(JPEG_SUFFIXES):
            others.append(f)
            continue
        read = _read_jpeg(f, view[start : start + f.size], max_pixels)
        if read is None:
            others.append(f)
        elif read[0].error is not None:
            failed.append(read[0])
        else:
            spans.append((start, start + f.size))
            records.append(read[0])
            orientations.append(read[1])
        start += f.size
    return buf, spans, records, orientations, others, failed


def decode_batch(files: Sequence[FileStat], max_pixels: int, transform: Callable, side: int, device: str) -> DecodedBatch:
    """One batch, in a decode worker: JPEGs by nvJPEG on `device`, everything else (and a batch
    nvJPEG refuses: CMYK, odd progressive files) by Pillow through the model's `transform`."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    clock: dict[str, float] = {}
    t = time.perf_counter()
    buf, spans, records, orientations, others, failed = read_jpegs(files, max_pixels)
    t = _tick(clock, "read + check + hash", t)
    rows = []
    if records:
        try:
            decoded = decode_jpeg([buf[a:b] for a, b in spans], mode=ImageReadMode.RGB, device=device)
            t = _tick(clock, "nvJPEG", t)
            rows.append(resize_crop([upright(im, o) for im, o in zip(decoded, orientations)], side).round_().to(torch.uint8))
            t = _tick(clock, "resize", t)
        except RuntimeError:
            others, records = [FileStat(r.path, r.size, r.mtime) for r in records] + others, []
    pillow = [decode_for_model(f, transform, max_pixels) for f in others]
    records += [r for r, x in pillow if x is not None]
    failed += [r for r, x in pillow if x is None]
    if any(x is not None for _, x in pillow):
        rows.append(torch.stack([x for _, x in pillow if x is not None]).to(device))
    t = _tick(clock, "Pillow", t)
    pixels = None
    if rows:
        # allocated in shared memory, as DataLoader's own collate does, so the copy from the GPU
        # is the only one on the batch's way to the main process
        n = sum(len(r) for r in rows)
        pixels = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(n * 3 * side * side)).view(n, 3, side, side)
        pixels.copy_(torch.cat(rows))
        _tick(clock, "copy back", t)
    return DecodedBatch(pixels, records + failed, clock)


class _DecodeBatches:
    """A map-style dataset whose keys are whole batches of files (so the workers get only their
    batch, not the whole file list: spawned processes would each receive a copy)."""

    def __init__(self, max_pixels: int, transform: Callable, side: int, device: str) -> None:
        self.max_pixels, self.transform, self.side, self.device = max_pixels, transform, side, device

    def __getitem__(self, files: Sequence[FileStat]) -> DecodedBatch:
        return decode_batch(files, self.max_pixels, self.transform, self.side, self.device)


def _as_is(batch: DecodedBatch) -> DecodedBatch:
    return batch


def decode_workers(device: str, cores: int | None = None, gpu_bytes: int | None = None) -> int:
    """Decode processes for a GPU: enough to keep nvJPEG and the model busy (8 on a 16-core H100
    machine), two cores left for the main process, and about 4 GiB of GPU memory each (a CUDA
    context plus a batch of full-size decoded photos)."""
    import torch

    cores = cores or os.cpu_count() or 1
    if gpu_bytes is None:
        gpu_bytes = torch.cuda.get_device_properties(torch.device(device)).total_memory
    return max(1, min(8, cores - 2, gpu_bytes // 2**32))


def resize_crop(images, side: int, mode: str = "bicubic", group: int = 64):
    """Shorter side to `side` (antialiased) and a centre crop, on the images' device: a list of
    uint8 (3,H,W) -> float (N,3,side,side) in 0..255. Images of one size are resized together
    (collections repeat a few camera sizes), in groups of at most `group`."""
    import torch
    import torch.nn.functional as F

    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        by_shape.setdefault(tuple(im.shape[-2:]), []).append(i)
    out = torch.empty((len(images), 3, side, side), device=images[0].device) if images else torch.empty((0, 3, side, side))
    for (h, w), where in by_shape.items():
        scale = side / min(h, w)
        size = (max(side, round(h * scale)), max(side, round(w * scale)))
        top, left = (size[0] - side) // 2, (size[1] - side) // 2
        for j in range(0, len(where), group):
            chunk = where[j : j + group]
            x = torch.stack([images[i] for i in chunk]).float()
            x = F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)
            out[torch.tensor(chunk, device=out.device)] = x[..., top : top + side, left : left + side].clamp(0, 255)
    return out


def gpu_batches(files: Sequence[FileStat], batch_size: int, device: str, side: int, mean, std, max_pixels: int,
                fallback: Callable, workers: int = 8,
                timings: dict[str, float] | None = None) -> Iterator[tuple[object, list[NewImage]]]:
    """Yield (normalised pixel batch on `device` or None, records), like the DataLoader path:
    records with vectors first, in the order of the pixel rows. `fallback(image) -> uint8 CHW
    tensor` is the model's own Pillow transform, for what nvJPEG does not take. `timings`, if
    given, collects the workers' seconds per step, summed, and the main process's waits."""
    import torch

    clock = timings if timings is not None else {}
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    cuda = torch.device(device).type == "cuda"
    stream = torch.cuda.Stream(device) if cuda else None  # on a CPU (the tests) everything is synchronous
    # Pass shared memory by name: the default passes a file descriptor, which the receiving thread
    # must fetch from a helper thread in the (busy) worker for every batch.
    torch.multiprocessing.set_sharing_strategy("file_system")
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    loader = torch.utils.data.DataLoader(
        _DecodeBatches(max_pixels, fallback, side, device), sampler=batches, batch_size=None, collate_fn=_as_is,
        num_workers=workers, prefetch_factor=2 if workers else None,
        # a forked child cannot use CUDA once the parent has; on a CPU forking is faster
        multiprocessing_context="spawn" if cuda and workers else None)

    def to_device(batch: DecodedBatch):
        for step, seconds in batch.seconds.items():
            clock[f"workers: {step}"] = clock.get(f"workers: {step}", 0.0) + seconds
        if batch.pixels is None:
            return None, batch.records, None
        with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
            pixels = (batch.pixels.to(device, non_blocking=True).float() / 255.0 - m) / s
            done = torch.cuda.Event() if cuda else None
            if done is not None:
                done.record(stream)
        return pixels, batch.records, done

    t = time.perf_counter()
    for pixels, records, done in in_background((to_device(b) for b in loader), "decoded-batches"):
        _tick(clock, "main: wait for decoded batches", t)
        if done is not None:
            torch.cuda.current_stream(device).wait_event(done)
            pixels.record_stream(torch.cuda.current_stream(device))  # made on the side stream
        yield pixels, records
        t = time.perf_counter()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def in_background(items: Iterable, name: str, depth: int = 2) -> Iterator:
    """Iterate `items` in a thread of its own, up to `depth` items ahead of the caller. An error
    there is raised here; closing the returned generator stops the thread (and closes `items`)."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            with contextlib.closing(items) if hasattr(items, "close") else contextlib.nullcontext():
                for item in items:
                    if not offer(item):
                        return
            offer(end)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread)
            offer(_Raised(exc))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not end:
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


def _tick(clock: dict[str, float], step: str, since: float) -> float:
    now = time.perf_counter()
    clock[step] = clock.get(step, 0.0) + now - since
    return now
