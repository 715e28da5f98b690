"""GPU indexing throughput: model-only ceiling vs end to end from JPEG files, for ViT-B/32 and mini,
both RANDOMLY INITIALISED (the real architectures; speed does not depend on weight values, and
real weights cannot travel to the GPU machine). One run, one table.

    python benchmarks/bench_gpu.py                      # on the GPU machine
    python benchmarks/bench_gpu.py --pipeline-only --images 18000 --readers 4 6   # docs/benchmarks.md
    python benchmarks/bench_gpu.py --images 200 --model-batch 16 --iters 3   # smoke run on a CPU

Rows: model-only images/s on preprocessed tensors already on the device (bf16 autocast); end to
end from JPEGs on disk through viewfinder's own ingest stages (decode + resize in DataLoader
worker processes with JPEG draft mode, pinned memory, non-blocking copies, bf16); the same with
JPEG decoding on the GPU (torchvision.io.decode_jpeg / nvJPEG, resize on the GPU); text encoding.
--pipeline-only: the ceiling, each stage of viewfinder's CUDA path alone, the path itself (with its
threads' time split), and Engine.index with its catalogue writes."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from viewfinder.config import Config
from viewfinder.ingest.gpu_decode import READ_BATCH_BYTES, resize_crop

from common import (
    GpuUtilisation,
    file_stats,
    file_tensor,
    hard_linked,
    make_jpegs,
    print_table,
    random_mini,
    random_vit_b_32,
    synchronize,
)

READERS = Config().workers  # the default reader process count


def model_only(enc, batch: int, iters: int, compile_model: bool = False) -> float:
    import torch

    enc.ensure_loaded()
    if compile_model:
        enc._image_features = torch.compile(enc._image_features)
    pixels = torch.randn(batch, 3, 224, 224, device=enc.device)
    for _ in range(3):
        enc.encode_image_tensors(pixels)
    synchronize(enc.device)
    t = time.perf_counter()
    for _ in range(iters):
        enc.encode_image_tensors(pixels)
    synchronize(enc.device)
    return batch * iters / (time.perf_counter() - t)


def end_to_end_cpu_decode(
    enc, files: list[Path], batch: int, workers: int, uint8: bool = True
) -> tuple[float, str]:
    """viewfinder's ingest stages without the catalogue writes (measured separately on the CPU)."""
    from viewfinder.ingest.pipeline import cpu_batches

    stats = file_stats(files)
    split = enc.uint8_transform() if uint8 else None
    transform, mean, std = split if split is not None else (enc.image_transform(), None, None)
    rates = []
    for _ in range(2):  # the first pass includes starting the workers; the second is the steady state
        n = 0
        with GpuUtilisation() as util:
            t = time.perf_counter()
            for pixels, _ in cpu_batches(stats, transform, batch, workers, 10**9):
                enc.encode_image_tensors(pixels, mean, std)
                n += len(pixels)
            synchronize(enc.device)
            rates.append(n / (time.perf_counter() - t))
    return rates[1], f"{util.mean} (first pass {rates[0]:,.0f}/s)"


class _RawBytes:
    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        # numpy, not tensors: hundreds of small tensors per batch would each cost a shared file
        # descriptor between processes, and the per-process limit runs out
        return np.frombuffer(bytearray(self.files[i].read_bytes()), dtype=np.uint8)


def end_to_end_gpu_decode(enc, files: list[Path], batch: int, workers: int, mean, std) -> tuple[float, str]:
    """Workers only read bytes; nvJPEG decodes the batch on the GPU; resize and crop there too."""
    import torch
    from torchvision.io import decode_jpeg

    m = torch.tensor(mean, device=enc.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=enc.device).view(1, 3, 1, 1)
    loader = torch.utils.data.DataLoader(
        _RawBytes(files),
        batch_size=batch,
        num_workers=workers,
        collate_fn=list,
        prefetch_factor=4 if workers else None,
        persistent_workers=workers > 0,
    )
    for _ in loader:  # start the workers and read every file once (page cache), as the PIL rows' second pass
        pass
    n = 0
    stages = {"wait for bytes": 0.0, "nvJPEG decode": 0.0, "resize + crop": 0.0, "model": 0.0}
    with GpuUtilisation() as util:
        t = time.perf_counter()
        mark = time.perf_counter()
        for raw in loader:
            now = time.perf_counter()
            stages["wait for bytes"] += now - mark
            images = decode_jpeg([torch.from_numpy(r) for r in raw], device=enc.device)
            synchronize(enc.device)
            stages["nvJPEG decode"] += time.perf_counter() - now
            now = time.perf_counter()
            pixels = (resize_crop(images, 224, mode="bilinear") / 255.0 - m) / s
            synchronize(enc.device)
            stages["resize + crop"] += time.perf_counter() - now
            now = time.perf_counter()
            enc.encode_image_tensors(pixels)
            stages["model"] += time.perf_counter() - now
            n += len(pixels)
            mark = time.perf_counter()
        synchronize(enc.device)
        elapsed = time.perf_counter() - t
    split = ", ".join(f"{k} {v / elapsed:.0%}" for k, v in stages.items())
    return n / elapsed, f"{util.mean} ({split})"


def end_to_end_gpu_decode_threaded(
    enc, files: list[Path], batch: int, threads: int, mean, std
) -> tuple[float, str]:
    """As above, but the bytes are read by a thread pool in the main process (file reads release
    the GIL), one batch ahead: no worker processes, no pickling of bytes between processes."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from torchvision.io import decode_jpeg

    m = torch.tensor(mean, device=enc.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=enc.device).view(1, 3, 1, 1)
    batches = [files[i : i + batch] for i in range(0, len(files), batch)]
    n = 0
    with ThreadPoolExecutor(threads) as pool, GpuUtilisation() as util:
        t = time.perf_counter()
        pending = pool.map(file_tensor, batches[0])
        for i in range(len(batches)):
            raw = list(pending)
            if i + 1 < len(batches):
                pending = pool.map(file_tensor, batches[i + 1])
            images = decode_jpeg(raw, device=enc.device)
            pixels = (resize_crop(images, 224, mode="bilinear") / 255.0 - m) / s
            enc.encode_image_tensors(pixels)
            n += len(pixels)
        synchronize(enc.device)
        elapsed = time.perf_counter() - t
    return n / elapsed, util.mean


def viewfinder_gpu_path(
    enc,
    files: list[Path],
    batch: int,
    readers: int | None,
    model: bool = True,
    repeat: int = 1,
    batches: Callable | None = None,
    decoders: tuple[str, ...] = (),
    cpu_share: float | None = None,
    drafters: int | None = None,
) -> tuple[float, str]:
    """viewfinder's own CUDA indexing path (ingest/gpu_decode.py, or `batches` with the same
    signature), without the catalogue writes, over the files `repeat` times (a longer run from the
    same JPEGs), with `decoders` (() : those Engine.index picks) and `readers` reader processes
    (None: as many as Engine.index starts), `drafters` draft processes (None: as many as
    Engine.index starts; `batches` of earlier commits: common.earlier_gpu_batches). Returns the
    rate after the first batch (the steady state) and a note with the readers, the whole run's
    rate and the start-up time."""
    from viewfinder.ingest.gpu_decode import gpu_batches, gpu_decoders_for, gpu_readers, mostly_large

    batches = batches or gpu_batches
    transform, mean, std = enc.uint8_transform()
    stats = file_stats(files) * repeat
    large = mostly_large(stats)
    decoders = gpu_decoders_for(large, decoders)
    readers = readers or gpu_readers(large, Config().workers, decoders, cpu_share)
    n, clock = 0, {}
    with GpuUtilisation() as util:
        t = time.perf_counter()
        for pixels, _ in batches(
            stats,
            batch_size=batch,
            device=enc.device,
            side=_side(enc),
            mean=mean,
            std=std,
            max_pixels=10**9,
            fallback=transform,
            workers=readers,
            decoders=decoders,
            timings=clock,
            cpu_share=cpu_share,
            drafters=drafters,
        ):
            if model:
                enc.encode_image_tensors(pixels)
            if not n:
                synchronize(enc.device)
                first, first_n = time.perf_counter() - t, len(pixels)
            n += len(pixels)
        synchronize(enc.device)
        elapsed = time.perf_counter() - t
    steady = (n - first_n) / (elapsed - first)
    split = ", ".join(f"{k} {v / elapsed:.0%}" for k, v in clock.items())
    return (
        steady,
        f"{util.mean} ({n} images, {readers} readers, decoders {'+'.join(decoders)}; "
        f"whole run {n / elapsed:,.0f}/s, "
        f"first batch after {first:.1f} s; {split})",
    )


def viewfinder_index(
    enc,
    folder: Path,
    decoders: tuple[str, ...] = (),
    gpu_decode: bool = True,
    workers: int | None = None,
    copies: int = 1,
    pillow_share: float | None = None,
    drafters: int | None = None,
) -> tuple[float, str]:
    """`Engine.index` itself: the CUDA path (or, gpu_decode=False, Pillow in `workers` decode
    processes) plus the SQLite catalogue, the FAISS index and its checkpoint, default batch
    size: what `viewfinder index DIR` does on this machine; `copies` links of each file."""
    from viewfinder import Engine

    if copies > 1:
        folder = hard_linked(folder, copies)
    reports = []
    for _ in range(2):  # each pass into a new catalogue; the second is reported
        with GpuUtilisation() as util:
            with Engine(
                Config(
                    db=Path(tempfile.mkdtemp(prefix="vf-db-")),
                    model="bench",
                    device=enc.device,
                    gpu_decoders=decoders,
                    gpu_decode=gpu_decode,
                    gpu_pillow_share=pillow_share,
                    gpu_draft_processes=drafters,
                    **({"workers": workers} if workers else {}),
                ),
                encoder=enc,
            ) as engine:
                reports.append(engine.index(folder, progress=False))
    first, rep = reports
    return rep.images_per_second, (
        f"{util.mean} (batch {engine.batch_size}, {rep.embedded} embedded in {rep.seconds:.1f} s; "
        f"first pass {first.images_per_second:,.0f}/s)"
    )


def _side(enc) -> int:
    from PIL import Image

    return int(enc.uint8_transform()[0](Image.new("RGB", (256, 256))).shape[-1])


READ_BATCH_MB = READ_BATCH_BYTES >> 20
HASHES = {"blake3": "BLAKE3 (shipped)", "sha256": "SHA-256 (before 2026-11-26)"}


@contextlib.contextmanager
def content_hash_as(name: str):
    """The GPU path's readers hash with `name` meanwhile, the JPEGs for nvJPEG and those they
    decode alike (they are forked: they inherit it)."""
    import hashlib

    from viewfinder import images
    from viewfinder.ingest import gpu_decode

    shipped = images.content_hash
    if name == "sha256":
        images.content_hash = gpu_decode.content_hash = lambda data: hashlib.sha256(data).hexdigest()
    try:
        yield
    finally:
        images.content_hash = gpu_decode.content_hash = shipped


@contextlib.contextmanager
def read_batches_of(megabytes: int):
    """The GPU path's reader batches hold at most `megabytes` of files meanwhile (shipped:
    gpu_decode.READ_BATCH_BYTES)."""
    import functools

    from viewfinder.ingest import gpu_decode

    shipped = gpu_decode.byte_bounded
    gpu_decode.byte_bounded = functools.partial(shipped, max_bytes=megabytes << 20)
    try:
        yield
    finally:
        gpu_decode.byte_bounded = shipped


def stage_rates(enc, files: list[Path], batch: int) -> list[tuple[str, str, str]]:
    """Each stage of the CUDA path alone, on the same files, to show where the time goes."""
    import torch

    from viewfinder.ingest.gpu_decode import _as_is, _Batches, jpeg_bytes, read_batch, resize_crop
    from viewfinder.ingest.gpu_jpeg import jpeg_decoder
    from viewfinder.ingest.read_slots import ReadSlots

    rows = []
    transform = enc.uint8_transform()[0]
    stats = file_stats(files)
    # into a read slot used again and again, as the pipeline's readers read
    slot = ReadSlots(1, max(jpeg_bytes(stats[i : i + batch]) for i in range(0, 5 * batch, batch)))

    def read(i: int) -> int:
        group = stats[i : i + batch]
        slot.give_back(read_batch(group, 10**9, transform, slots=slot).slot)
        return len(group)

    read(0)
    for name in ("sha256", "blake3"):  # the one measured last, the shipped one, sets the limit below
        with content_hash_as(name):
            t = time.perf_counter()
            # files counted as read: a short folder has fewer than four batches after the first
            done = sum(read(i) for i in range(batch, 5 * batch, batch))
            read_rate = done / (time.perf_counter() - t)
        rows.append((f"stage: read + header check + {HASHES[name]}, one process", f"{read_rate:,.0f}", ""))
    loader = torch.utils.data.DataLoader(
        _Batches(stats, batch, 10**9, transform),
        batch_size=None,
        collate_fn=_as_is,
        num_workers=READERS,
        prefetch_factor=2,
    )
    t = time.perf_counter()
    raws = list(loader)
    rows.append(
        (
            f"stage: the same in {READERS} worker processes, a batch each",
            f"{len(stats) / (time.perf_counter() - t):,.0f}",
            "",
        )
    )
    from viewfinder.images import DRAFT_SIZE
    from viewfinder.ingest.prepare import decode_for_model

    decode_for_model(stats[0], transform, 10**9, DRAFT_SIZE)
    t = time.perf_counter()
    for f in stats[1:33]:
        decode_for_model(f, transform, 10**9, DRAFT_SIZE)
    draft = 32 / (time.perf_counter() - t)
    rows.append(("stage: Pillow decode (JPEG draft mode) + resize, one process", f"{draft:,.1f}", "per core"))
    # from page-locked memory, where nvJPEG is fastest: the limit counts it at its best (the
    # pipeline's read slots are not page-locked: that measured no faster, docs/benchmarks.md),
    # through each GPU decoder that is installed, the fastest of them
    data = [j.pin_memory() if enc.device == "cuda" else j for raw in raws[:8] for j in raw.jpegs()]
    nvjpeg, fastest = 0.0, None
    gpu = (("torchvision", "torchvision"), ("nvimgcodec-hw", "nvImageCodec, hardware engines"))
    for spec, via in gpu if enc.device == "cuda" else gpu[:1]:
        try:
            decode = jpeg_decoder(spec, enc.device)
        except ImportError:
            continue
        decoded = decode(data[:batch])
        synchronize(enc.device)
        t = time.perf_counter()
        for i in range(0, len(data), batch):
            decoded = decode(data[i : i + batch])
        synchronize(enc.device)
        rate = len(data) / (time.perf_counter() - t)
        if rate > nvjpeg:
            nvjpeg, fastest = rate, decode
        rows.append(
            (
                f"stage: nvJPEG decode alone via {via} (bytes in page-locked memory, batch {batch})",
                f"{rate:,.0f}",
                "",
            )
        )
    # the decode limit: nvJPEG busy all the time, and the spare cores' time left after reading
    # and hashing nvJPEG's files spent on draft decoding
    spare = max(1, (os.cpu_count() or 2) - 2)  # a core for the main process, one for its threads
    left = max(0.0, spare - nvjpeg / read_rate)
    rows.append(
        (
            f"decode limit: nvJPEG (fastest above) + draft decode on {spare} spare cores' time left "
            "after reading",
            f"{nvjpeg + left * draft:,.0f}",
            f"{nvjpeg:,.0f} + {left:.1f} x {draft:.1f} (left: {spare} - {nvjpeg:,.0f} / {read_rate:.0f})",
        )
    )
    if fastest is not None:
        rows += decoding_together(fastest, data, batch, stats, transform, spare, enc.device)
    side = _side(enc)
    for label, mode, group in (
        ("bicubic, grouped by size", "bicubic", 64),
        ("bilinear, grouped by size", "bilinear", 64),
        ("bicubic, one image at a time", "bicubic", 1),
    ):
        resize_crop(decoded, side, mode, group)
        synchronize(enc.device)
        t = time.perf_counter()
        for _ in range(5):
            resize_crop(decoded, side, mode, group)
        synchronize(enc.device)
        rows.append(
            (
                f"stage: resize + crop on the GPU, {label}",
                f"{5 * len(decoded) / (time.perf_counter() - t):,.0f}",
                "",
            )
        )
    return rows


def _draft_until(files: list, transform: Callable, start, stop, done) -> None:
    """A draft-decoding process of decoding_together: decodes `files` round and round from the
    moment every process has passed the barrier `start` until `stop`, then puts its rate into
    `done`."""
    import torch

    from viewfinder.images import DRAFT_SIZE
    from viewfinder.ingest.prepare import decode_for_model

    torch.set_num_threads(1)
    mine = itertools.cycle(files)
    decode_for_model(next(mine), transform, 10**9, DRAFT_SIZE)  # imports and caches, not timed
    start.wait()
    n, t = 0, time.perf_counter()
    while not stop.is_set():
        decode_for_model(next(mine), transform, 10**9, DRAFT_SIZE)
        n += 1
    done.put(n / (time.perf_counter() - t))


def decoding_together(
    decode: Callable, data: list, batch: int, stats: list, transform: Callable, spare: int, device: str
) -> list[tuple[str, str, str]]:
    """The decode limit measured rather than added up: the GPU decoder in calls of `batch` and k
    processes draft-decoding (reading and hashing included, as the readers do) all at once, for
    k from none to every spare core; the best sum of the two rates. On 16-core hosts the drafts
    took host time from nvImageCodec (docs/benchmarks.md), so the sum of their rates measured
    apart overstates what the machine decodes. No reads for the GPU's files are counted here, so
    this limit is still an upper bound for a pipeline that must also read them."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")  # the children draft-decode only: no CUDA in them
    rows, best = [], (0.0, 0)
    for k in sorted({0, 2, 4, spare // 2, 3 * spare // 4, spare}):
        # all start timing together, each child after its first, untimed draft decode
        start, stop, done = fork.Barrier(k + 1), fork.Event(), fork.Queue()
        procs = [
            fork.Process(target=_draft_until, args=(stats[i::k], transform, start, stop, done), daemon=True)
            for i in range(k)
        ]
        for p in procs:
            p.start()
        start.wait()
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < 4.0:
            for i in range(0, len(data), batch):
                n += len(decode(data[i : i + batch]))
        synchronize(device)
        gpu = n / (time.perf_counter() - t)
        stop.set()
        drafts = sum(done.get(timeout=60) for _ in procs)
        for p in procs:
            p.join()
        best = max(best, (gpu + drafts, k))
        rows.append(
            (
                f"stage: fastest GPU decoder (batch {batch}) and {k} draft-decoding processes at once",
                f"{gpu + drafts:,.0f}",
                f"GPU {gpu:,.0f} + drafts {drafts:,.1f}",
            )
        )
    rows.append(
        (
            "decode limit, measured: the GPU decoder and draft decodes at once, the best k above",
            f"{best[0]:,.0f}",
            f"k = {best[1]}",
        )
    )
    return rows


def text_rate(enc, n: int, batch: int) -> float:
    words = "a photo of the red car dog cat on beach with two people at night in snow house tree".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, 8)) for _ in range(n)]
    enc.encode_texts(texts[:batch], batch_size=batch)
    synchronize(enc.device)
    t = time.perf_counter()
    enc.encode_texts(texts, batch_size=batch)
    synchronize(enc.device)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4000, help="synthetic JPEGs for the end-to-end rows")
    ap.add_argument(
        "--sizes", nargs="+", default=["500x375", "1024x768"], help="JPEG sizes WxH, the images split evenly"
    )
    ap.add_argument("--model-batch", type=int, default=512)
    ap.add_argument("--pipeline-batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--texts", type=int, default=16384)
    ap.add_argument(
        "--vocab", type=Path, default=None, help="MiniLM vocab.txt where the package is not installed"
    )
    ap.add_argument(
        "--readers",
        type=int,
        nargs="*",
        help="reader process counts to try on the CUDA path (default: as many as Engine.index starts)",
    )
    ap.add_argument("--models", nargs="*", help="of ViT-B/32, mini v1 and mini (default all)")
    ap.add_argument(
        "--repeat", type=int, default=1, help="go over the JPEGs this many times (Engine.index: hard links)"
    )
    ap.add_argument(
        "--decoders",
        nargs="*",
        default=["auto"],
        help="GPU JPEG decoder sets for the CUDA path rows, a thread each, joined by + (ingest/gpu_jpeg.py); "
        "auto: those Engine.index picks for the files (gpu_decode.gpu_decoders_for)",
    )
    ap.add_argument(
        "--pillow-shares",
        nargs="*",
        default=["auto"],
        help="shares of the large JPEGs that the readers decode with Pillow (setting gpu_pillow_share), "
        "a CUDA path and an Engine.index row each; auto: the default",
    )
    ap.add_argument(
        "--hashes",
        nargs="*",
        choices=list(HASHES),
        default=["blake3"],
        help="content hashes the CUDA path's readers use, a CUDA path and an Engine.index row each",
    )
    ap.add_argument(
        "--read-batch-mb",
        type=int,
        nargs="*",
        default=[READ_BATCH_MB],
        help="megabytes of files a reader batch of the CUDA path holds, a CUDA path and an Engine.index "
        "row each",
    )
    ap.add_argument(
        "--cpu-workers",
        type=int,
        nargs="*",
        help="also Engine.index with Pillow decoding in this many workers",
    )
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd image towers")
    ap.add_argument(
        "--format",
        choices=["jpg", "png", "heic"],
        default="jpg",
        help="the files made; png and heic: only the Pillow-decode Engine.index rows (--cpu-workers)",
    )
    ap.add_argument(
        "--pipeline-only", action="store_true", help="only the ceiling and viewfinder's own GPU path"
    )
    args = ap.parse_args()
    import torch

    folder = Path(tempfile.mkdtemp(prefix="vf-jpegs-"))
    t = time.perf_counter()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    files = make_jpegs(folder, args.images, sizes, ext=args.format)
    mb = sum(f.stat().st_size for f in files) / len(files) / 1e6
    print(
        f"made {len(files)} {args.format.upper()} files ({', '.join(args.sizes)}; {mb:.1f} MB average) "
        f"in {time.perf_counter() - t:.0f} s",
        flush=True,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    models = [
        (
            "ViT-B/32",
            random_vit_b_32,
            ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ),
        (
            "mini v1",
            lambda device: random_mini(device, args.vocab, "v1"),
            ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ),
        (
            "mini",
            lambda device: random_mini(device, args.vocab),
            ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ),
    ]
    for name, build, (mean, std) in models:
        if args.models and name not in args.models:
            continue
        enc = build(device)
        ceiling = model_only(enc, args.model_batch, args.iters)
        rows.append((name, "model only (tensors on device)", f"{ceiling:,.0f}", "1.00", ""))
        jpeg = args.format == "jpg"  # the CUDA path's own rows need JPEGs
        if device == "cuda":
            if args.pipeline_only and jpeg:
                rows += [
                    (name, what, rate, "", note)
                    for what, rate, note in stage_rates(enc, files, args.pipeline_batch)
                ]
            combos = itertools.product(args.decoders, args.pillow_shares, args.hashes, args.read_batch_mb)
            for mix, share, hashed, read_mb in combos:
                with content_hash_as(hashed), read_batches_of(read_mb):
                    decoders = () if mix == "auto" else tuple(mix.split("+"))
                    cpu_share = None if share == "auto" else float(share)
                    by = (
                        ("" if mix == "auto" else f", decoders {mix}")
                        + ("" if cpu_share is None else f", Pillow share {cpu_share:g}")
                        + ("" if hashed == "blake3" else f", hashing {HASHES[hashed]}")
                        + ("" if read_mb == READ_BATCH_MB else f", reader batches <= {read_mb} MB")
                    )
                    for readers in (args.readers or [None]) if jpeg else []:
                        vf, vutil = viewfinder_gpu_path(
                            enc,
                            files,
                            args.pipeline_batch,
                            readers,
                            repeat=args.repeat,
                            decoders=decoders,
                            cpu_share=cpu_share,
                        )
                        rows.append(
                            (
                                name,
                                f"viewfinder CUDA path: {readers or 'default'} reader processes{by}, "
                                "after the first batch",
                                f"{vf:,.0f}",
                                f"{vf / ceiling:.2f}",
                                vutil,
                            )
                        )
                    if args.pipeline_only and jpeg and cpu_share is None:
                        readers = (args.readers or [None])[-1]  # as the row above
                        vf, vutil = viewfinder_gpu_path(
                            enc,
                            files,
                            args.pipeline_batch,
                            readers,
                            model=False,
                            repeat=args.repeat,
                            decoders=decoders,
                        )
                        rows.append(
                            (
                                name,
                                f"the same, no model (decode + resize only), {readers or 'default'} "
                                f"readers{by}",
                                f"{vf:,.0f}",
                                "",
                                vutil,
                            )
                        )
                    ix, ixnote = viewfinder_index(
                        enc, folder, decoders, copies=args.repeat, pillow_share=cpu_share
                    )
                    rows.append(
                        (
                            name,
                            f"Engine.index end to end (+ SQLite catalogue, FAISS, checkpoint){by}",
                            f"{ix:,.0f}",
                            f"{ix / ceiling:.2f}",
                            ixnote,
                        )
                    )
            for workers in args.cpu_workers or []:
                ix, ixnote = viewfinder_index(
                    enc, folder, gpu_decode=False, workers=workers, copies=args.repeat
                )
                rows.append(
                    (
                        name,
                        f"Engine.index, CPU decode in {workers} workers",
                        f"{ix:,.0f}",
                        f"{ix / ceiling:.2f}",
                        ixnote,
                    )
                )
        if args.compile and device == "cuda":
            try:
                rows.append(
                    (
                        name,
                        "model only, torch.compile",
                        f"{model_only(enc, args.model_batch, args.iters, True):,.0f}",
                        "",
                        "",
                    )
                )
            except Exception as exc:  # noqa: BLE001  (report, do not abort the table)
                rows.append((name, "model only, torch.compile", "failed", "", type(exc).__name__))
        if args.pipeline_only:
            rows.append((name, "text encoding (texts/s)", f"{text_rate(enc, args.texts, 1024):,.0f}", "", ""))
            continue
        for uint8 in (False, True):
            e2e, util = end_to_end_cpu_decode(enc, files, args.pipeline_batch, args.workers, uint8)
            what = "uint8 from workers, normalise on device" if uint8 else "float from workers"
            rows.append(
                (
                    name,
                    f"end to end, PIL decode in {args.workers} workers, {what}",
                    f"{e2e:,.0f}",
                    f"{e2e / ceiling:.2f}",
                    util,
                )
            )
        if device == "cuda":
            gpu, gutil = end_to_end_gpu_decode(
                enc, files, args.pipeline_batch, min(args.workers, 4), mean, std
            )
            rows.append(
                (name, "end to end, nvJPEG decode on GPU", f"{gpu:,.0f}", f"{gpu / ceiling:.2f}", gutil)
            )
            thr, tutil = end_to_end_gpu_decode_threaded(enc, files, args.pipeline_batch, 8, mean, std)
            rows.append(
                (
                    name,
                    "end to end, nvJPEG, bytes read by 8 threads",
                    f"{thr:,.0f}",
                    f"{thr / ceiling:.2f}",
                    tutil,
                )
            )
            t = time.perf_counter()
            nbytes = sum(f.stat().st_size for f in files)
            for f in files:
                f.read_bytes()
            rows.append(
                (
                    name,
                    f"read the files only (main thread, {nbytes / len(files) / 1e3:.0f} kB average)",
                    f"{len(files) / (time.perf_counter() - t):,.0f}",
                    "",
                    f"{nbytes / (time.perf_counter() - t) / 1e6:,.0f} MB/s",
                )
            )
        rows.append((name, "text encoding (texts/s)", f"{text_rate(enc, args.texts, 1024):,.0f}", "", ""))
        del enc
        if device == "cuda":
            torch.cuda.empty_cache()
    gpu_name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    print_table(
        f"viewfinder GPU indexing benchmark on {gpu_name} ({os.cpu_count()} CPU cores), random-init "
        "weights, bf16 on GPU",
        ("model", "path", "images/s", "of ceiling", "GPU util"),
        rows,
    )


if __name__ == "__main__":
    main()
