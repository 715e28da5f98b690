"""The decode-worker design of session 3's runs 12-13 and 15, kept for benchmarks/
exp_decode_workers.py only (viewfinder uses the thread design in ingest/gpu_decode.py, which
measured faster): spawned worker processes, each with its own nvJPEG, read, decode, resize and
return uint8 batches in shared memory; the main process copies them to the GPU and normalises."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from viewfinder.ingest.gpu_decode import _tick, device_setup, in_background, read_jpegs, resize_crop, upright
from viewfinder.ingest.pipeline import decode_for_model
from viewfinder.ingest.walk import FileStat
from viewfinder.store import NewImage


@dataclass
class DecodedBatch:
    """What a decode worker hands back for one batch."""
    pixels: object  # uint8 (N,3,side,side) tensor in shared memory, or None
    records: list[NewImage]  # the first N have rows in `pixels`, in order; then the failures
    seconds: dict[str, float] = field(default_factory=dict)  # the worker's time per step


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


def _by_name(_: int) -> None:
    """In each spawned worker: pass shared memory by name (a spawned child does not inherit it)."""
    import torch

    torch.multiprocessing.set_sharing_strategy("file_system")


def gpu_batches(files: Sequence[FileStat], batch_size: int, device: str, side: int, mean, std, max_pixels: int,
                fallback: Callable, workers: int = 8,
                timings: dict[str, float] | None = None) -> Iterator[tuple[object, list[NewImage]]]:
    """Yield (normalised pixel batch on `device` or None, records), like the DataLoader path:
    records with vectors first, in the order of the pixel rows. `fallback(image) -> uint8 CHW
    tensor` is the model's own Pillow transform, for what nvJPEG does not take. `timings`, if
    given, collects the workers' seconds per step, summed, and the main process's waits."""
    import torch

    clock = timings if timings is not None else {}
    m, s, cuda, stream = device_setup(device, mean, std)
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    loader = torch.utils.data.DataLoader(
        _DecodeBatches(max_pixels, fallback, side, device), sampler=batches, batch_size=None, collate_fn=_as_is,
        num_workers=workers, prefetch_factor=2 if workers else None,
        # a forked child cannot use CUDA once the parent has; on a CPU forking is faster
        multiprocessing_context="spawn" if cuda and workers else None, worker_init_fn=_by_name if workers else None)

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
