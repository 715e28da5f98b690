"""JPEG decoding on the GPU for the indexing pipeline: by default torchvision's nvJPEG, which on
A100/H100-class GPUs runs on their hardware JPEG engines (gpu_jpeg.py has the other decoders).

Six stages run at once, and for folders of phone photos a seventh (measured on H100 and H200
hosts, docs/benchmarks.md):
- worker processes read a whole batch of files, check headers against the pixel limit, note the
  EXIF orientation and hash them, their JPEG bytes into a read slot of memory shared with the
  main process (read_slots.py: a batch passes as its slot number, not one pickle per file); other
  formats and a share of large JPEGs are decoded there by Pillow;
- a thread receives those batches from the workers;
- a prepare thread (one per configured decoder) does the host-side work of the decoder's next
  call (nvImageCodec: parse headers, allocate outputs);
- a decoder thread (one per configured decoder) decodes batch after batch and only turns the
  images upright besides: torchvision runs one decode at a time per process and returns only
  when it is done, so other work in this thread would leave the hardware decoder idle (with it
  here: 56% of the time in nvJPEG; without: 76-92%, and 4,773 -> 5,667 images/s on the same
  6,000 files; nvImageCodec's call took 95% of the thread's samples with its host-side work in
  the prepare thread, 81% with it in this thread, where that work took 11%);
- a thread resizes, crops and normalises each decoded batch, on the same high-priority stream;
- the caller runs the model on batch n, on a stream of its own (model_stream), while the next
  ones are prepared;
- draft processes decode whole batches with Pillow from the back of the run while the readers
  take them from the front (Claims), and a thread hands their pixels to the resize thread.
(Threads instead of worker processes measured 2,200-3,100 files/s for the read stage: the
per-file Python work serialises on the GIL. Decode worker processes with an nvJPEG each measured
slower still, most likely because the GPU time-slices between processes: docs/benchmarks.md.)"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from PIL import Image
from PIL.ExifTags import Base as ExifTag

from ..errors import ImageTooLargeError
from ..images import check_pixels, content_hash, load_codecs
from ..store import NewImage
from .gpu_jpeg import JpegDecoder, installed, reused_decoder
from .prepare import decode_for_model, die_with_parent
from .read_slots import ReadSlots
from .walk import FileStat

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")
# A reader's batch holds at most this many bytes of files: a model batch of 256 phone photos
# (1 GB) took one reader over a second to read and hash while the others had nothing to do.
READ_BATCH_BYTES = 128 << 20
# JPEGs this large (phone and camera photos, >= about 5 MP) are where nvJPEG is the bound: spare
# reader processes decode a share of them in Pillow's draft mode (DCT-domain downscaling). Rates
# for 12 MP photos on an H100 host with 16 cores: nvJPEG 583-628 images/s, draft decode 14.1-16.7
# a core, read + header + SHA-256 227-235 files/s a core (benchmarks/results/gpu_12mp_h100_*.txt).
# The readers hash with BLAKE3 since 2026-11-26 (269-353 files/s a core); the share these rates
# give beside torchvision, 22% with 14 readers, stays: 10%, 15% and 30% measured slower. Beside
# nvImageCodec's faster hardware decoder (2026-11-27) 22% left it waiting for the readers; its
# rate gave 16.5%, and later none measured as fast (READ_ONLY_BESIDE, docs/benchmarks.md).
LARGE_JPEG_BYTES = 1_500_000
# 12 MP JPEGs a second on lent H100/H200 hosts: a GPU decoder's (calls of one reader batch),
# a core's draft decodes and a core's reads (docs/benchmarks.md), for auto_cpu_share
GPU_LARGE_RATES = {"torchvision": 600.0, "nvimgcodec-hw": 800.0}
DRAFT_LARGE_RATE, READ_LARGE_RATE = 15.0, 230.0
# GPU decoders whose host side the readers' draft decodes slow down by about as much as they add:
# beside nvImageCodec, a Pillow share of 0 indexed as fast as the rate formula's 16.5% on H100
# and H200 hosts, and 6-7 readers that only read and hash as fast as 14 drafting ones
# (benchmarks/results/gpu_12mp_h100_pillow_shares_nvimgcodec.txt, gpu_12mp_h200_readers_share.txt)
READ_ONLY_BESIDE = ("nvimgcodec", "nvimgcodec-hw")
# Draft processes (gpu_batches' `drafters`) decode whole batches from the back of the run, in
# chunks of this many files, so that where they meet the readers' batches from the front a chunk
# or two, not a batch, is left to wait for; the model gets their photos in batches of at least
# DRAFT_GATHER.
DRAFT_CHUNK, DRAFT_GATHER = 2, 32


@dataclass
class RawBatch:
    """What a worker hands back for one batch: where the JPEG files' bytes lie, and what Pillow
    decoded."""

    jpeg_bytes: object  # uint8 tensor (None while the bytes lie in a read slot: `slot`)
    jpeg_spans: list[tuple[int, int]]  # (start, end) in jpeg_bytes, one per jpeg record
    jpeg_records: list[NewImage]
    jpeg_orientations: list[int]  # EXIF orientation (1-8), one per jpeg record: nvJPEG ignores it
    pillow_pixels: object  # uint8 (N,3,side,side) tensor or None
    pillow_records: list[NewImage]
    failed: list[NewImage]
    seconds: float = 0.0  # the worker's time on it
    # the ReadSlots slot the JPEG bytes lie in (jpeg_bytes is None until the main process sets
    # it to the slot's view: a tensor on the slot would be copied to fresh shared memory on its
    # way); None when jpeg_bytes is a buffer of its own
    slot: int | None = None

    def jpegs(self) -> list:
        return [self.jpeg_bytes[a:b] for a, b in self.jpeg_spans]


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
                orientation = im.getexif().get(ExifTag.Orientation, 1)
            fh.seek(0)
            if fh.readinto(slot) != len(slot) or fh.read(1):
                return None
    except Exception:  # noqa: BLE001  (Pillow gives the precise reason)
        return None
    try:
        check_pixels(stat.path, w, h, max_pixels)
    except ImageTooLargeError as exc:
        return NewImage(stat.path, stat.size, stat.mtime, error=str(exc)), 1
    return NewImage(stat.path, stat.size, stat.mtime, content_hash(slot), w, h), orientation


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


def for_pillow(files: Sequence[FileStat], share: float) -> set[str]:
    """The large JPEGs of a batch that Pillow decodes instead of the GPU: `share` of them, spread
    evenly through the batch."""
    large = [f.path for f in files if f.size >= LARGE_JPEG_BYTES and f.path.lower().endswith(JPEG_SUFFIXES)]
    return {path for k, path in enumerate(large) if int((k + 1) * share) > int(k * share)}


def _gpu_large_rate(decoders: Sequence[str]) -> float:
    """The fastest of `decoders` on 12 MP JPEGs (GPU_LARGE_RATES; an unknown one as torchvision)."""
    return max(
        GPU_LARGE_RATES.get(name.partition(":")[0], GPU_LARGE_RATES["torchvision"]) for name in decoders
    )


def _drafts_add(decoders: Sequence[str]) -> bool:
    """Whether the readers' draft decodes add to what `decoders` decode (READ_ONLY_BESIDE)."""
    return not any(name.partition(":")[0] in READ_ONLY_BESIDE for name in decoders)


def auto_cpu_share(readers: int, decoders: Sequence[str] = ("torchvision",)) -> float:
    """The share of large JPEGs that `readers` processes should decode so that the GPU decoder
    stays busy and the readers' time left after reading its files goes to draft decoding (at the
    rates measured on H100/H200 hosts): 22% with 14 readers beside torchvision, none with 4 (they
    are busy reading), and none beside nvImageCodec (READ_ONLY_BESIDE)."""
    if not _drafts_add(decoders):
        return 0.0
    gpu = _gpu_large_rate(decoders)
    spare = readers - gpu / READ_LARGE_RATE
    cpu = max(0.0, spare) * DRAFT_LARGE_RATE
    return cpu / (gpu + cpu)


def mostly_large(files: Sequence[FileStat]) -> bool:
    """Whether the median file is a phone-size photo or larger (gpu_readers, gpu_decoders_for)."""
    sizes = sorted(f.size for f in files)
    return bool(sizes) and sizes[len(sizes) // 2] >= LARGE_JPEG_BYTES


def gpu_readers(
    large: bool, workers: int, decoders: Sequence[str] = ("torchvision",), share: float | None = None
) -> int:
    """Reader processes for the GPU path: `workers` (small files: 8 or 14 readers were slower than
    4, docs/benchmarks.md), or for a folder of mostly `large` photos every core but two (one for
    the main process, one for its threads), which then also decode a share of them; where they
    decode none (Pillow `share` 0, or None beside a READ_ONLY_BESIDE decoder) twice the cores
    that reading and hashing at the decoders' rate takes, 7 beside nvImageCodec: the other cores
    stay free for the rest of the machine."""
    if not large:
        return workers
    cores = max(1, (os.cpu_count() or 2) - 2)
    if share == 0.0 or (share is None and not _drafts_add(decoders)):
        return max(workers, min(cores, math.ceil(2 * _gpu_large_rate(decoders) / READ_LARGE_RATE)))
    return max(workers, cores)


def gpu_drafters(large: bool, share: float) -> int:
    """Draft processes for the GPU path (gpu_batches' `drafters`): for a folder of mostly `large`
    photos whose readers decode none of them (Pillow `share` 0, as beside nvImageCodec), half the
    cores: 8 on a 16-core host, where they took `Engine.index` on 8,000 phone photos from 785-799
    to 811-866 images/s on two lent H200 hosts and from 781-789 to 845-850 on a lent H100 host
    (4 and 11 added less; benchmarks/results/gpu_12mp_h*_draft_lane*.txt); the readers (busy
    about 2 cores) and the main process's threads (about 2.5) leave the rest. None otherwise:
    small files decode faster on the GPU than these drafts, and readers that draft a share are
    busy already."""
    return (os.cpu_count() or 2) // 2 if large and share == 0.0 else 0


def gpu_decoders_for(large: bool, configured: Sequence[str] = ()) -> tuple[str, ...]:
    """The GPU JPEG decoders (gpu_jpeg.py) for a folder: `configured` if any; else for a folder of
    mostly `large` photos nvImageCodec's hardware decoder where it is installed (12 MP JPEGs: 601
    against torchvision's 415 images/s in calls of 32 on a lent H200; docs/benchmarks.md), and
    torchvision otherwise (on small files nvImageCodec was the slower)."""
    if configured:
        return tuple(configured)
    if large and installed("nvimgcodec-hw"):
        return ("nvimgcodec-hw",)
    return ("torchvision",)


def byte_bounded(files: Sequence[FileStat], batch_size: int, max_bytes: int = READ_BATCH_BYTES) -> list:
    """`files` in order, in batches of at most `batch_size` files and `max_bytes` (a single file
    larger than that is a batch of its own)."""
    batches, batch, size = [], [], 0
    for f in files:
        if batch and (len(batch) == batch_size or size + f.size > max_bytes):
            batches.append(batch)
            batch, size = [], 0
        batch.append(f)
        size += f.size
    return batches + ([batch] if batch else [])


def jpeg_bytes(files: Sequence[FileStat], pillow: set[str] = frozenset()) -> int:
    """The bytes a batch's JPEGs (but those in `pillow`) take in a reader's buffer."""
    return sum(f.size for f in files if f.path.lower().endswith(JPEG_SUFFIXES) and f.path not in pillow)


def shared_bytes(nbytes: int):
    """A uint8 tensor of `nbytes` in fresh shared memory (passed to another process by handle)."""
    import torch

    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(nbytes))


def read_jpegs(files: Sequence[FileStat], max_pixels: int, buf=None, pillow: set[str] = frozenset()):
    """Read a batch's plain JPEGs (but those in `pillow`) into one uint8 tensor with no copies:
    `buf` (at least `jpeg_bytes(files, pillow)` long) or a new one in ordinary memory -> (buffer,
    spans, records, orientations, files for Pillow, refused records)."""
    import torch

    if buf is None:
        buf = torch.empty(jpeg_bytes(files, pillow), dtype=torch.uint8)
    view = memoryview(buf.numpy())
    spans, records, orientations, others, failed = [], [], [], [], []
    start = 0
    for f in files:
        if not f.path.lower().endswith(JPEG_SUFFIXES) or f.path in pillow:
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


def read_batch(
    files: Sequence[FileStat],
    max_pixels: int,
    transform: Callable,
    cpu_share: float = 0.0,
    slots: ReadSlots | None = None,
) -> RawBatch:
    """One batch, in a worker: JPEG bytes into a free slot of `slots` if they fit one, else into
    one tensor of fresh shared memory (the DataLoader then passes a handle, not a copy); other
    formats, refused JPEGs and `cpu_share` of the large JPEGs decoded by Pillow (draft mode)."""
    started = time.perf_counter()
    drafted = for_pillow(files, cpu_share)
    nbytes = jpeg_bytes(files, drafted)
    # in shared memory from the start, so the bytes are written once (by the read) and never
    # copied on their way to the main process
    slot = slots.take() if slots is not None and nbytes <= slots.size else None
    buf = slots.view(slot, nbytes) if slot is not None else shared_bytes(nbytes)
    buf, spans, jpeg_records, orientations, others, failed = read_jpegs(files, max_pixels, buf, drafted)
    pixels, pillow_records, refused = _by_pillow(others, transform, max_pixels)
    failed += refused
    position = {f.path: i for i, f in enumerate(files)}
    failed.sort(key=lambda r: position[r.path])  # reported in the order of the files
    return RawBatch(
        buf if slot is None else None,
        spans,
        jpeg_records,
        orientations,
        pixels,
        pillow_records,
        failed,
        time.perf_counter() - started,
        slot,
    )


def _by_pillow(files: Sequence[FileStat], transform: Callable, max_pixels: int) -> tuple:
    """`files` decoded by Pillow (large JPEGs in draft mode) -> (uint8 (N,3,side,side) tensor or
    None, their records, the records of those that failed)."""
    import torch

    decoded = [decode_for_model(f, transform, max_pixels) for f in files]
    pixels = [t for _, t in decoded if t is not None]
    return (
        torch.stack(pixels) if pixels else None,
        [r for r, t in decoded if t is not None],
        [r for r, t in decoded if t is None],
    )


def draft_batch(files: Sequence[FileStat], max_pixels: int, transform: Callable) -> RawBatch:
    """One chunk, in a draft process: every file decoded by Pillow."""
    started = time.perf_counter()
    pixels, records, failed = _by_pillow(files, transform, max_pixels)
    return RawBatch(None, [], [], [], pixels, records, failed, time.perf_counter() - started)


def joined(raws: Sequence[RawBatch]) -> RawBatch:
    """Batches with no JPEG bytes (draft processes' chunks) as one."""
    import torch

    pixels = [r.pillow_pixels for r in raws if r.pillow_pixels is not None]
    return RawBatch(
        None,
        [],
        [],
        [],
        torch.cat(pixels) if pixels else None,
        [rec for r in raws for rec in r.pillow_records],
        [rec for r in raws for rec in r.failed],
        sum(r.seconds for r in raws),
    )


class Claims:
    """Which side takes each of a run's `n` batches: the readers from the front (for the GPU
    decoders), the draft processes from the back, until they meet; each batch goes to one side."""

    def __init__(self, n: int) -> None:
        self._lock = threading.Lock()
        self._front, self._back = 0, n

    def take(self, back: bool = False) -> int | None:
        """The next batch for that side, or None once every batch is taken."""
        with self._lock:
            if self._front >= self._back:
                return None
            if back:
                self._back -= 1
                return self._back
            self._front += 1
            return self._front - 1

    def front(self) -> Iterator[int]:
        """The readers' batches, taken as the DataLoader asks for them (its sampler)."""
        while (i := self.take()) is not None:
            yield i


class _Drafts:
    """A map-style dataset of chunks of DRAFT_CHUNK files of `batches`, item `b * PARTS + p`
    being part p of batch b, decoded by Pillow in draft processes; `keys` is its sampler, which
    takes batches from the back of `claims` one at a time, as the DataLoader asks for chunks."""

    PARTS = 1 << 16  # more than the files of any batch

    def __init__(
        self, batches: Sequence[Sequence[FileStat]], claims: Claims, max_pixels: int, transform: Callable
    ):
        self.batches, self.claims = batches, claims
        self.max_pixels, self.transform = max_pixels, transform

    def __getitem__(self, key: int) -> RawBatch:
        b, p = divmod(key, self.PARTS)
        return draft_batch(
            self.batches[b][p * DRAFT_CHUNK : (p + 1) * DRAFT_CHUNK], self.max_pixels, self.transform
        )

    def keys(self) -> Iterator[int]:
        while (b := self.claims.take(back=True)) is not None:
            yield from (b * self.PARTS + p for p in range(math.ceil(len(self.batches[b]) / DRAFT_CHUNK)))


def gathered(chunks: Iterable[RawBatch], images: int) -> Iterator[RawBatch]:
    """Draft chunks joined into batches of at least `images` images (the last one may be short):
    the model and the catalogue take them in fewer, larger steps."""
    waiting: list[RawBatch] = []
    held = 0
    for raw in chunks:
        waiting.append(raw)
        held += len(raw.pillow_records) + len(raw.failed)
        if held >= images:
            yield joined(waiting)
            waiting, held = [], 0
    if waiting:
        yield joined(waiting)


class _Batches:
    """A map-style dataset whose items are whole batches (at most `batch_size` files and
    READ_BATCH_BYTES), read by DataLoader workers. The first `plain_first` batches have no Pillow
    share: with one of them per reader, nvJPEG gets its first batch as soon as a reader has read
    one, not after its draft decodes too (0.56-0.70 s after the start instead of 1.25-1.77 s for
    14 readers on an H100 host: benchmarks/results/gpu_12mp_h100_startup.txt)."""

    def __init__(
        self,
        files: Sequence[FileStat],
        batch_size: int,
        max_pixels: int,
        transform: Callable,
        cpu_share: float = 0.0,
        plain_first: int = 0,
    ) -> None:
        self.batches = byte_bounded(files, batch_size)
        self.max_pixels, self.transform, self.cpu_share = max_pixels, transform, cpu_share
        self.plain_first = plain_first
        # the read slots the readers read into, made from slot_size() before they fork; None:
        # a fresh shared-memory buffer a batch
        self.slots: ReadSlots | None = None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> RawBatch:
        return read_batch(self.batches[i], self.max_pixels, self.transform, self.share(i), self.slots)

    def share(self, i: int) -> float:
        """The share of batch `i`'s large JPEGs that its reader decodes with Pillow."""
        return 0.0 if i < self.plain_first else self.cpu_share

    def warm_up(self) -> list:
        """JPEGs like the first batch's for a decoder's warm-up: its first JPEG (one file read; the
        readers read the rest meanwhile) as often as its JPEGs' bytes hold that file, at most once
        for each of them, so the warm-up decodes about the pixels the first batch will. Nothing when
        that file is not one the readers would hand to the GPU (not a plain JPEG, or over the
        pixel limit: a bomb is refused before any decoding, here too)."""
        import torch

        first = self.batches[0] if self.batches else []
        jpegs = [f for f in first if f.path.lower().endswith(JPEG_SUFFIXES)]
        if not jpegs:
            return []
        data = torch.empty(jpegs[0].size, dtype=torch.uint8)
        read = _read_jpeg(jpegs[0], memoryview(data.numpy()), self.max_pixels)
        if read is None or read[0].error is not None:
            return []
        # at least once: the sum counts the file itself (which was read, so it is not empty)
        return [data] * min(len(jpegs), sum(f.size for f in jpegs) // jpegs[0].size)

    def slot_size(self) -> int:
        """Bytes of a read slot that takes the JPEGs of every batch within READ_BATCH_BYTES (a
        larger one is a single file, which gets a buffer of its own)."""
        sizes = [jpeg_bytes(b, for_pillow(b, self.share(i))) for i, b in enumerate(self.batches)]
        return max([n for n in sizes if n <= READ_BATCH_BYTES], default=0)


def _as_is(batch: RawBatch) -> RawBatch:
    return batch


def resize_crop(images, side: int, mode: str = "bicubic", group: int = 64):
    """Shorter side to `side` (antialiased) and a centre crop, on the images' device: a list of
    uint8 (3,H,W) -> float (N,3,side,side) in 0..255. Images of one size are resized together
    (collections repeat a few camera sizes), in groups of at most `group` and of at most about
    200 M pixels. A photo more than twice the target size is first averaged over k x k blocks
    down to at least twice the target (a box filter; JPEG draft decoding on the CPU does the same
    in the DCT domain), so the antialiased filter runs on a few hundred thousand pixels, not 12
    million (docs/benchmarks.md: 12 MP photos)."""
    import torch
    import torch.nn.functional as F

    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        by_shape.setdefault(tuple(im.shape[-2:]), []).append(i)
    out = (
        torch.empty((len(images), 3, side, side), device=images[0].device)
        if images
        else torch.empty((0, 3, side, side))
    )
    for (h, w), where in by_shape.items():
        k = min(h, w) // (2 * side)  # the box reduction, >= 2 only for large photos
        # torchvision's geometry (Resize(side) + CenterCrop(side)), to the pixel: the long side
        # rounded down, the crop offset rounded (a rounded-up long side cost cosine 0.986 -> 0.9999)
        size = (side, int(side * w / h)) if h <= w else (int(side * h / w), side)
        top, left = int(round((size[0] - side) / 2.0)), int(round((size[1] - side) / 2.0))
        step = max(1, min(group, 200_000_000 // (h * w)))
        for j in range(0, len(where), step):
            chunk = where[j : j + step]
            x = torch.stack([images[i] for i in chunk]).float()
            if k >= 2:
                x = F.avg_pool2d(x, k)  # drops the last h % k rows and w % k columns: under 0.5%
            x = F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)
            out[_to_device(torch.tensor(chunk), out.device)] = x[
                ..., top : top + side, left : left + side
            ].clamp(0, 255)
    return out


def _to_device(tensor, device):
    """A CPU tensor on `device`, on CUDA copied from page-locked memory without waiting: a plain
    copy from ordinary memory (`.to(device)`, `torch.tensor(..., device=)`) first waits for every
    kernel queued on the stream, the decoder's too on the resize stream (twice a batch of phone
    photos for the resize's row index)."""
    import torch

    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def device_setup(device: str, mean, std):
    """(mean and std as (1,3,1,1) tensors on `device`, whether it is CUDA, a side stream or None
    on a CPU, where the tests run everything synchronously). Also makes this process pass shared
    memory by name: the default passes a file descriptor, which the receiving thread must fetch
    from a helper thread in the (busy, GIL-bound) worker for every batch."""
    import torch

    cuda = torch.device(device).type == "cuda"
    torch.multiprocessing.set_sharing_strategy("file_system")
    return (
        torch.tensor(mean, device=device).view(1, 3, 1, 1),
        torch.tensor(std, device=device).view(1, 3, 1, 1),
        cuda,
        side_stream(device) if cuda else None,
    )


@functools.lru_cache(maxsize=None)
def side_stream(device: str, high_priority: bool = True, number: int = 0):
    """CUDA stream `number` for the decode and resize work, by default at high priority, so that
    the GPU schedules its kernels ahead of the model's as SMs come free. With the model running,
    decoding alone went 7,793 -> 8,560 images/s that way on an H100; in the whole pipeline the
    difference was within noise (6,553 -> 6,612; benchmarks/bench_decoders.py, bench_gpu.py).
    The same stream every run of a process: PyTorch caches freed GPU memory by stream, so a new
    stream a run kept the last run's decoded photos cached out of reach, 8 GiB more a run of 12 MP
    photos, until nvImageCodec's own allocations failed (benchmarks/gpu_memory_runs.py)."""
    import torch

    return torch.cuda.Stream(device, priority=-1 if high_priority else 0)


def model_stream(device: str):
    """The CUDA stream the caller of `gpu_batches` runs the model on while it takes batches: one
    of its own at normal priority (cached like side_stream's), not the legacy default stream,
    which waits for (and holds up) work on every blocking stream of the process; other
    libraries' streams, such as nvImageCodec's, may be such. With the model on the default stream
    it waited for the resize 2-26% of the run on two lent H200 hosts, on this one 47-54%, and
    `Engine.index` on phone photos went 746-748 -> 797-803 images/s on one, 732-737 -> 786-793 on
    the other (benchmarks/results/gpu_12mp_h200_model_stream*.txt)."""
    return side_stream(device, high_priority=False, number=-1)


@dataclass
class _GpuStages:
    """The decode and resize stages of `gpu_batches`, each run by a thread of its own, and the
    clock they share (seconds per step)."""

    device: str
    side: int
    mean: object  # (1,3,1,1) tensors on the device
    std: object
    cuda: bool
    stream: object  # the resize stream (None on a CPU)
    max_pixels: int
    fallback: Callable
    clock: dict[str, float]
    slots: ReadSlots | None

    def prepare(self, raw: RawBatch, decoder: JpegDecoder, step: str, on) -> tuple[RawBatch, object]:
        """The host-side work of `decoder`'s call on the batch's JPEGs (JpegDecoder.prepare), for
        CUDA stream `on` -> (batch, what the call takes, or the RuntimeError that sends the batch
        to Pillow). Run a batch ahead of the call, in a thread of its own: in the decoder thread
        it took 11% of that thread's samples on phone photos, while the hardware decoder waited
        (benchmarks/results/gpu_12mp_h100_profile_nvimgcodec.txt)."""
        import torch

        if raw.slot is not None:  # taken until decode() returns
            raw.jpeg_bytes = self.slots.view(raw.slot, self.slots.size)
        if not raw.jpeg_records:
            return raw, None
        t = time.perf_counter()
        with torch.cuda.stream(on) if self.cuda else contextlib.nullcontext():
            try:
                return raw, decoder.prepare(raw.jpegs())
            except RuntimeError as exc:  # a JPEG the decoder refuses
                return raw, exc
            finally:
                _tick(self.clock, step, t)

    def decode(
        self, prepared: tuple[RawBatch, object], decoder: JpegDecoder, step: str, on
    ) -> tuple[RawBatch, list, object]:
        """`decoder` on a batch `prepare` made ready, queued on CUDA stream `on` -> (batch, upright
        images in jpeg_records' order, an event the resize stream must wait for or None); a batch
        it refuses goes to Pillow, so one odd file costs its batch speed, not its embeddings. The
        batch's read slot is free again when this returns (every decoder has read its input by
        then: gpu_jpeg.py)."""
        raw, ready = prepared
        try:
            return self._decode(raw, ready, decoder, step, on)
        finally:
            if raw.slot is not None:
                self.slots.give_back(raw.slot)
                raw.slot, raw.jpeg_bytes = None, None

    def _decode(
        self, raw: RawBatch, prepared: object, decoder: JpegDecoder, step: str, on
    ) -> tuple[RawBatch, list, object]:
        import torch

        if not raw.jpeg_records:
            return raw, [], None
        with torch.cuda.stream(on) if self.cuda else contextlib.nullcontext():
            try:
                if isinstance(prepared, RuntimeError):
                    raise prepared
                t = time.perf_counter()
                images = decoder.decode(prepared)
                _tick(self.clock, step, t)
                if not decoder.upright:
                    images = [upright(im, o) for im, o in zip(images, raw.jpeg_orientations)]
                ready = torch.cuda.Event() if self.cuda and on is not self.stream else None
                if ready is not None:
                    ready.record(on)
                return raw, images, ready
            except RuntimeError:  # a JPEG the decoder refuses (CMYK, odd progressive)
                self.to_pillow(raw)
        return raw, [], None

    def to_pillow(self, raw: RawBatch) -> None:
        """Decode the batch's JPEGs with Pillow instead (into its Pillow part, or failed)."""
        import torch

        files = [FileStat(r.path, r.size, r.mtime) for r in raw.jpeg_records]
        more, records, failed = _by_pillow(files, self.fallback, self.max_pixels)
        raw.jpeg_records = []
        raw.pillow_records = raw.pillow_records + records
        if more is not None:
            raw.pillow_pixels = (
                torch.cat([raw.pillow_pixels, more]) if raw.pillow_pixels is not None else more
            )
        raw.failed.extend(failed)

    def resize(self, raw: RawBatch, images: list, ready) -> tuple[object, list[NewImage], object]:
        """(normalised pixel batch, its records in row order then the failed ones, an event the
        model's stream must wait for or None)."""
        import torch

        t = time.perf_counter()
        with torch.cuda.stream(self.stream) if self.cuda else contextlib.nullcontext():
            if ready is not None:  # decoded on another decoder thread's stream
                self.stream.wait_event(ready)
                for im in images:
                    im.record_stream(self.stream)
            tensors = [resize_crop(images, self.side)] if images else []
            if raw.pillow_pixels is not None:
                tensors.append(_to_device(raw.pillow_pixels, self.device).float())
            pixels = (torch.cat(tensors) / 255.0 - self.mean) / self.std if tensors else None
            done = torch.cuda.Event() if self.cuda else None
            if done is not None:
                done.record(self.stream)
        _tick(self.clock, "resize thread: launches", t)
        return pixels, raw.jpeg_records + raw.pillow_records + raw.failed, done

    def timed(self, items: Iterator, step: str, own: str | None = None) -> Iterator:
        """`items`, with the time spent waiting for them added up under `step`, and for batches
        from worker processes their `own` time too (where one thread at a time takes a batch)."""
        t = time.perf_counter()
        for item in items:
            _tick(self.clock, step, t)
            if own:
                self.clock[own] = self.clock.get(own, 0.0) + item.seconds
            yield item
            t = time.perf_counter()


def gpu_batches(
    files: Sequence[FileStat],
    *,
    batch_size: int,
    device: str,
    side: int,
    mean,
    std,
    max_pixels: int,
    fallback: Callable,
    workers: int = 8,
    decoders: Sequence[str] = ("torchvision",),
    timings: dict[str, float] | None = None,
    cpu_share: float | None = None,
    drafters: int | None = None,
) -> Iterator[tuple[object, list[NewImage]]]:
    """Yield (normalised pixel batch on `device` or None, records), like the DataLoader path:
    records with vectors first, in the order of the pixel rows. `fallback(image) -> uint8 CHW
    tensor` is the model's own Pillow transform, for what the GPU does not take. `decoders`: the
    GPU JPEG decoders (gpu_jpeg.jpeg_decoder), a thread each. `timings`, if given, collects the
    decoder and resize threads' seconds per step (where the time goes). `cpu_share`: of the
    large JPEGs, the share the readers decode with Pillow (None: `auto_cpu_share(workers, decoders)`).
    `drafters`: processes that decode whole batches with Pillow (draft mode), taken from the back
    of the run while the readers take them from the front, so that they add to the GPU decoders'
    rate without holding up the batches the decoders wait for, as a Pillow share in the readers'
    batches does (None: `gpu_drafters`).
    On CUDA the caller's thread is on `model_stream(device)` from the first batch until the
    generator is closed or done, so that the model it runs between batches goes there."""
    import torch

    load_codecs()  # before the readers are forked (in the decoder thread)
    m, s, cuda, stream = device_setup(device, mean, std)
    share = auto_cpu_share(workers, decoders) if cpu_share is None else cpu_share
    batches = _Batches(files, batch_size, max_pixels, fallback, share, plain_first=workers)
    drafters = gpu_drafters(mostly_large(files), share) if drafters is None else drafters
    prefetch = 2 if workers else None
    # the readers' DataLoader takes its first workers x prefetch batches as it starts: in a run of
    # no more (a few new photos in a watched folder) draft processes would be forked for nothing
    drafters = drafters if len(batches) > workers * (prefetch or 0) else 0
    # A slot for every batch that can be between a reader's read and the end of its decode: the
    # DataLoader's (prefetch per reader), the receiving thread's (one in hand, two queued), for
    # each decoder its prepare thread's (one in hand, one queued) and one in its decoder thread,
    # and one to spare; with fewer, a reader waiting for a slot could hold up the batch the
    # DataLoader must hand over next while later ones hold every slot. No more than batches.
    held = workers * (prefetch or 0) + 3 + 3 * len(decoders) + 1
    try:
        batches.slots = ReadSlots(min(held, len(batches)), batches.slot_size())
    except OSError:  # no room for the mapping (strict overcommit): a fresh buffer a batch, slower
        batches.slots = None
    stages = _GpuStages(
        device,
        side,
        m,
        s,
        cuda,
        stream,
        max_pixels,
        fallback,
        timings if timings is not None else {},
        batches.slots,
    )
    claims = Claims(len(batches))
    loader = _forked_loader(batches, claims.front(), workers, prefetch)
    drafts = _Drafts(batches.batches, claims, max_pixels, fallback)
    # few chunks queued per draft process: those are what is left to wait for at the end
    draft_loader = _forked_loader(drafts, drafts.keys(), drafters, 1) if drafters else None
    # Threads: one receives batches from the reader processes, two per decoder prepare and decode
    # them, two receive and gather the draft processes' chunks (if any), one resizes them all,
    # and the caller's runs the model; each hands over through a short queue. The first decoder
    # shares the resize thread's CUDA stream, so its images are ready (and their memory is not
    # reused) before the resize kernels run; others have streams of their own, which the resize
    # stream waits for.
    # The readers start (fork and read their first batches) before the decoders are made and
    # warmed up: a reader's first batch takes 0.6-0.7 s, a new nvImageCodec decoder up to 1.1 s
    # to make and 0.7-1.0 s to warm up (benchmarks/bench_decoder_start.py), one after the other
    with contextlib.ExitStack() as run:  # closed in reverse: the threads end, then decoders go back
        # closed here, not when this frame goes: a traceback that keeps the frame after an error
        # would keep the receiving thread and the readers running
        # the draft processes are forked here too, before any thread of this run starts
        read, drafted = iter(loader), iter(draft_loader) if draft_loader is not None else None
        received = run.enter_context(contextlib.closing(in_background(read, "reader-batches")))
        chunks = None if drafted is None else in_background(drafted, "draft-chunks")
        if chunks is not None:
            run.enter_context(contextlib.closing(chunks))
        del read, drafted  # held by the threads only: an error's traceback keeps this frame
        if cuda:  # the caller's thread, between batches too: it runs the model on model_stream
            run.enter_context(torch.cuda.stream(model_stream(device)))
        source = run.enter_context(
            contextlib.closing(
                stages.timed(
                    received, "decoder threads: wait for the readers", own="readers' own time, summed"
                )
            )
        )
        shared, lanes = Shared(source), {}  # each decoder's prepare thread takes the next batch
        for i, name in enumerate(decoders):
            on = stream if i == 0 or not cuda else side_stream(device, number=i)
            with torch.cuda.stream(on) if cuda else contextlib.nullcontext():
                fn = run.enter_context(reused_decoder(name, device, batches.warm_up))
            # a clock entry per thread: two threads adding to one entry could lose each other's time
            prepare = functools.partial(stages.prepare, decoder=fn, step=f"prepare thread {i}: {name}", on=on)
            ahead = in_background(map(prepare, shared), f"{name}-prepare-{i}", depth=1)
            run.enter_context(contextlib.closing(ahead))
            decode = functools.partial(
                stages.decode, decoder=fn, step=f"decoder thread {i}: {name} call", on=on
            )
            lanes[f"{name}-decoder-{i}"] = map(
                decode, stages.timed(ahead, f"decoder thread {i}: wait to prepare")
            )
        if chunks is not None:  # a lane of batches with no JPEGs for a GPU decoder
            own = "draft processes' own time, summed"
            waited = stages.timed(chunks, "draft lane: wait for the draft processes", own=own)
            lanes["drafts"] = ((raw, [], None) for raw in gathered(waited, DRAFT_GATHER))
        decoded = run.enter_context(contextlib.closing(merged(lanes)))
        decoded = stages.timed(decoded, "resize thread: wait for the decoders")
        resized = in_background((stages.resize(*item) for item in decoded), "resize")
        run.enter_context(contextlib.closing(resized))
        for pixels, records, done in stages.timed(resized, "model thread: wait for the resize"):
            if done is not None and pixels is not None:
                torch.cuda.current_stream(device).wait_event(done)
                pixels.record_stream(torch.cuda.current_stream(device))  # made on the side stream
            yield pixels, records


def _forked_loader(dataset, sampler: Iterable[int], workers: int, prefetch: int | None):
    """A DataLoader of whole items of `dataset` (batches, chunks) in the order `sampler` gives
    their keys, read by `workers` processes forked from this one (they inherit the read slots'
    mapping, whatever the platform's default), each dying with it."""
    import torch

    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,
        collate_fn=_as_is,
        num_workers=workers,
        worker_init_fn=functools.partial(die_with_parent, os.getpid()),
        prefetch_factor=prefetch,
        multiprocessing_context="fork" if workers else None,
    )


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def in_background(items: Iterable, name: str, depth: int = 2) -> Iterator:
    """Iterate `items` in a thread of its own, up to `depth` items ahead of the caller. An error
    there is raised here; closing the returned generator stops the thread (and closes `items`)."""
    return merged({name: iter(items)}, depth, items)


class Shared:
    """An iterator that several threads take items from, one at a time."""

    def __init__(self, items: Iterable) -> None:
        self._items = iter(items)
        self._take = threading.Lock()

    def __iter__(self) -> Shared:
        return self

    def __next__(self):
        with self._take:
            return next(self._items)


def merged(sources: dict[str, Iterator], depth: int = 2, items: object = None) -> Iterator:
    """The items of `sources` (thread name -> iterator), each iterated in a thread of its own,
    in the order they come, up to `depth` ahead of the caller. An error in any thread is raised
    here; closing the returned generator stops the threads (and then closes `items`)."""
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

    def run(source: Iterator) -> None:
        try:
            for item in source:
                if stop.is_set() or not offer(item):
                    return
            offer(end)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread)
            offer(_Raised(exc))

    threads = [
        threading.Thread(target=run, args=(source,), name=name, daemon=True)
        for name, source in sources.items()
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = ready.get()
            if item is end:
                running -= 1
            elif isinstance(item, _Raised):
                raise item.exc
            else:
                yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        if hasattr(items, "close"):
            items.close()


def _tick(clock: dict[str, float], step: str, since: float) -> float:
    now = time.perf_counter()
    clock[step] = clock.get(step, 0.0) + now - since
    return now
