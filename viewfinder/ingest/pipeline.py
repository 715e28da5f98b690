"""Index a folder: scan, diff against the catalogue, decode in worker processes while the model
embeds the previous batch, and commit each batch. Stages: plan -> decode (workers) -> embed ->
write. Each batch is one catalogue transaction, so a kill loses at most the batch in flight."""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import math
import os
import queue
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import ViewfinderError
from ..images import DRAFT_SIZE, HASH_PREFIX, content_hash_file, load_codecs
from ..store import Collection, NewImage, Store
from .prepare import decode_for_model, die_with_parent
from .walk import FileStat, scan

log = logging.getLogger(__name__)


@dataclass
class IndexPlan:
    """What an index run must do, decided before any decoding."""

    to_embed: list[FileStat] = field(default_factory=list)
    replace_ids: dict[str, int] = field(default_factory=dict)  # path -> old row id (changed files)
    moves: list[tuple[int, FileStat]] = field(default_factory=list)  # same content, new path or mtime
    to_delete: list[int] = field(default_factory=list)
    unchanged: int = 0


@dataclass
class IndexReport:
    scanned: int = 0
    embedded: int = 0
    unchanged: int = 0
    moved: int = 0
    deleted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"{self.scanned} files: {self.embedded} embedded, {self.unchanged} unchanged, "
            f"{self.moved} moved, {self.deleted} removed, {len(self.failed)} failed "
            f"({self.images_per_second:.1f} images/s)"
        )


def plan_index(files: Sequence[FileStat], known: dict) -> IndexPlan:
    """Diff the files on disk against the catalogue rows under the same root.

    Unchanged (same size and mtime) files are skipped. A new path whose content hash equals a row
    whose file vanished is a move; a changed mtime with the same hash is a touch: both keep their
    vector. Hashes are computed here only for those candidates (matched by size), so the common
    case reads each file once, in the decode workers."""
    plan = IndexPlan()
    on_disk = {f.path for f in files}
    vanished = {path: rec for path, rec in known.items() if path not in on_disk}
    by_size: dict[int, list] = {}
    for rec in vanished.values():
        if rec.content_hash and rec.error is None:
            by_size.setdefault(rec.size, []).append(rec)
    for f in files:
        rec = known.get(f.path)
        if rec is not None and rec.size == f.size and rec.mtime == f.mtime:
            plan.unchanged += 1
            continue
        if (
            rec is not None
            and rec.size == f.size
            and rec.content_hash
            and rec.error is None
            and _same_hash(f, rec.content_hash)
        ):
            plan.moves.append((rec.id, f))  # touched, same bytes
            continue
        if rec is None and f.size in by_size:
            hashed: dict[bool, str | None] = {}  # the file read once per algorithm, not once per candidate
            match = next((r for r in by_size[f.size] if _same_hash(f, r.content_hash, hashed)), None)
            if match is not None:
                by_size[f.size].remove(match)
                del vanished[match.path]
                plan.moves.append((match.id, f))
                continue
        if rec is not None:
            plan.replace_ids[f.path] = rec.id
        plan.to_embed.append(f)
    plan.to_delete = [rec.id for rec in vanished.values()]
    return plan


def _same_hash(f: FileStat, stored: str, hashed: dict | None = None) -> bool:
    """Whether the file's bytes hash to `stored` (in its algorithm); `hashed` keeps the file's
    hashes between calls, by algorithm (None: it could not be read)."""
    hashed = {} if hashed is None else hashed
    blake3 = stored.startswith(HASH_PREFIX)
    if blake3 not in hashed:
        try:
            hashed[blake3] = content_hash_file(Path(f.path), like=stored)
        except OSError:
            hashed[blake3] = None
    return hashed[blake3] == stored


def _decode_batch(
    files: Sequence[FileStat], transform: Callable, max_pixels: int, draft_size: int
) -> tuple[np.ndarray | None, list[NewImage]]:
    """Runs in a decode worker: files -> (their model inputs stacked in one numpy array, or None
    when none could be decoded; a record per file, with the failure reason where it failed).
    Numpy, not torch tensors, crosses the process boundary: plain bytes through the pipe."""
    items = [decode_for_model(f, transform, max_pixels, draft_size) for f in files]
    arrays = [t.numpy() if hasattr(t, "numpy") else np.asarray(t) for _, t in items if t is not None]
    return (np.stack(arrays) if arrays else None), [rec for rec, _ in items]


CPU_TASK_FILES = 8  # files a decode worker takes at a time


def cpu_batches(
    files: Sequence[FileStat], transform: Callable, batch_size: int, workers: int, max_pixels: int
) -> Iterator[tuple[np.ndarray | None, list[NewImage]]]:
    """(pixel batch or None, records) for `files` in order, in batches of `batch_size` files.
    Worker processes (none: this one) decode tasks of a few files each, so that every worker has
    work however large the model batch (with a task per model batch, 256 phone photos took one
    worker 18 s and a 1,000-photo folder kept 4 of 14 workers busy); at most 4 tasks a worker run
    ahead of the consumer, so memory stays bounded however many files there are."""
    task = math.gcd(batch_size, CPU_TASK_FILES)  # divides the batch: batches come out exact
    job = functools.partial(_decode_batch, transform=transform, max_pixels=max_pixels, draft_size=DRAFT_SIZE)
    chunks = (files[i : i + task] for i in range(0, len(files), task))
    if workers <= 0:
        yield from _regroup(map(job, chunks), batch_size)
        return
    load_codecs()
    # a pool that notices a worker dying (BrokenProcessPool) rather than waiting for it forever
    pool = ProcessPoolExecutor(workers, initializer=die_with_parent, initargs=(os.getpid(),))
    try:
        pending = collections.deque(pool.submit(job, c) for c in itertools.islice(chunks, 4 * workers))

        def results():
            while pending:
                result = pending.popleft().result()
                pending.extend(pool.submit(job, c) for c in itertools.islice(chunks, 1))
                yield result

        yield from _regroup(results(), batch_size)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # also when the consumer stops early


def _regroup(parts: Iterator, batch_size: int) -> Iterator[tuple[np.ndarray | None, list[NewImage]]]:
    """Decoded tasks -> batches of `batch_size` records (the pixel rows stay in the order of the
    records without error)."""
    arrays: list[np.ndarray] = []
    records: list[NewImage] = []
    for pixels, recs in parts:
        if pixels is not None:
            arrays.append(pixels)
        records += recs
        if len(records) >= batch_size:
            yield (np.concatenate(arrays) if arrays else None), records
            arrays, records = [], []
    if records:
        yield (np.concatenate(arrays) if arrays else None), records


def start_run(
    folder: Path, store: Store, on_error: Callable[[str], None] | None = None
) -> tuple[IndexPlan, IndexReport]:
    """Scan and plan, then apply what needs no model: moves, touches and deletions. Links that
    lead nowhere are reported like files that cannot be decoded."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise ViewfinderError(f"{folder}: not a folder; give the folder that holds your images")
    skipped: list[tuple[str, str]] = []
    files = scan(folder, skipped)
    plan = plan_index(files, store.catalog.images_under(str(folder)))
    report = IndexReport(scanned=len(files) + len(skipped), unchanged=plan.unchanged, failed=skipped)
    for _path, reason in skipped:
        (on_error or log.warning)(reason)
    for image_id, f in plan.moves:
        store.catalog.move_image(image_id, f.path, f.size, f.mtime)
    report.moved = len(plan.moves)
    if plan.to_delete:
        store.catalog.delete_images(plan.to_delete)
        index = store.vectors(Collection.IMAGES)
        index.remove(plan.to_delete)
        store.note_change(Collection.IMAGES, index)
        report.deleted = len(plan.to_delete)
    return plan, report


def commit_batch(
    store: Store,
    records: Sequence[NewImage],
    vectors: np.ndarray | None,
    replace_ids: dict[str, int],
    report: IndexReport,
    on_error: Callable[[str], None] | None = None,
) -> None:
    """One catalogue transaction for a decoded batch (vectors in order of the records without
    error), then the same change applied to the in-memory vector index."""
    replaced = [replace_ids[r.path] for r in records if r.path in replace_ids]
    index = store.vectors(Collection.IMAGES)
    ids = store.catalog.write_batch(records, vectors, replace_ids=replaced)
    index.remove(replaced)
    ok = [i for i, r in zip(ids, records) if r.error is None]
    if ok:
        index.add(np.asarray(ok, dtype=np.int64), vectors)
    store.note_change(Collection.IMAGES, index)
    for r in records:
        if r.error is not None:
            report.failed.append((r.path, r.error))
            (on_error or log.warning)(r.error)
    report.embedded += len(ok)


class InOrderWriter:
    """Runs `write(*job)` for each job, in order, in a thread of its own, so that the catalogue
    commit of batch n overlaps the model on batch n+1 (sqlite3 releases the GIL while it works;
    on an H100 the commits were a third of the indexing time). On leaving the `with` block,
    also through an exception or Ctrl-C, the queued batches are still written, then the first
    error of the writer is raised."""

    def __init__(self, write: Callable[..., None], depth: int = 2) -> None:
        self._write, self._jobs = write, queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="catalogue-writer", daemon=True)

    def __enter__(self) -> "InOrderWriter":
        self._thread.start()
        return self

    def put(self, *job: object) -> None:
        if self._error is not None:
            raise self._error
        self._jobs.put(job)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._error is None:
                try:
                    self._write(*job)
                except BaseException as exc:  # noqa: BLE001  (raised in the caller's thread)
                    self._error = exc

    def __exit__(self, *exc: object) -> None:
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error


@dataclass(frozen=True)
class EmbedOptions:
    """How to decode and embed: `max_pixels` bounds each image; `workers` decode processes;
    `checkpoint_seconds` between vector-index writes; `on_error` gets a line per bad file;
    on a CUDA device JPEGs are decoded there (by `gpu_decoders`, or () for those that suit the
    files: gpu_decode.gpu_decoders_for) unless gpu_decode=False."""

    max_pixels: int
    batch_size: int = 32
    workers: int = 2
    checkpoint_seconds: float = 30.0
    progress: bool = True
    on_error: Callable[[str], None] | None = None
    gpu_decode: bool = True
    gpu_decoders: Sequence[str] = ()
    gpu_pillow_share: float | None = None  # None: gpu_decode.auto_cpu_share
    gpu_draft_processes: int | None = None  # None: gpu_decode.gpu_drafters


def index_folder(folder: Path, store: Store, encoder, options: EmbedOptions) -> IndexReport:
    """Bring the catalogue in line with `folder`. Safe to interrupt at any point."""
    import time

    started = time.perf_counter()
    plan, report = start_run(folder, store, options.on_error)
    embed_files(plan, report, store, encoder, options)
    report.seconds = time.perf_counter() - started
    return report


def model_batches(files: Sequence[FileStat], encoder, options: EmbedOptions):
    """(pixel batch or None, records) for `files`, decoded by worker processes (or on the GPU),
    and the mean/std the model still has to apply (None when the batches arrive normalised)."""
    transform, mean, std = encoder.worker_transform()
    if options.gpu_decode and encoder.device == "cuda" and mean is not None:
        from PIL import Image

        from .gpu_decode import gpu_batches, gpu_decoders_for, gpu_readers, mostly_large

        side = int(transform(Image.new("RGB", (256, 256))).shape[-1])
        large = mostly_large(files)
        decoders = gpu_decoders_for(large, options.gpu_decoders)
        loader = gpu_batches(
            files,
            batch_size=options.batch_size,
            device=encoder.device,
            side=side,
            mean=mean,
            std=std,
            max_pixels=options.max_pixels,
            fallback=transform,
            workers=gpu_readers(large, options.workers, decoders, options.gpu_pillow_share),
            decoders=decoders,
            cpu_share=options.gpu_pillow_share,
            drafters=options.gpu_draft_processes,
        )
        return loader, None, None  # the GPU batches arrive normalised
    loader = cpu_batches(files, transform, options.batch_size, options.workers, options.max_pixels)
    return loader, mean, std


def embed_files(plan: IndexPlan, report: IndexReport, store: Store, encoder, options: EmbedOptions) -> None:
    """Embed `plan.to_embed` and commit each batch (replacing `plan.replace_ids`), then write the
    vector index."""
    from tqdm import tqdm

    if plan.to_embed:
        loader, mean, std = model_batches(plan.to_embed, encoder, options)
        bar = tqdm(
            total=len(plan.to_embed), unit="img", desc="indexing", disable=not options.progress, smoothing=0.1
        )

        def commit(records, vectors) -> None:
            commit_batch(store, records, vectors, plan.replace_ids, report, options.on_error)
            bar.update(len(records))
            store.checkpoint(Collection.IMAGES, every_seconds=options.checkpoint_seconds)

        with InOrderWriter(commit) as writer:
            for pixels, records in loader:
                vectors = encoder.encode_image_tensors(pixels, mean, std) if pixels is not None else None
                writer.put(records, vectors)
        bar.close()
    store.checkpoint(Collection.IMAGES)
