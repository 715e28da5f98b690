"""Scale-out indexing on Ray Data: the same stages as the local pipeline (plan -> decode + embed ->
write). An actor pool does decode + embed, one actor per GPU where the cluster has GPUs (else CPU
actors); each actor runs the local pipeline's own decode path on its chunks of files (on a GPU:
reader processes on its share of the CPUs and nvJPEG, as `viewfinder index` does on one GPU).

Each chunk that comes back is first written as an embedding shard file under `<db>/shards/`,
then merged into the catalogue and deleted. A run that dies between the two merges the shards it
finds before planning, so a shard that was written is never recomputed; files already merged are
skipped by the ordinary incremental plan."""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ViewfinderError
from ..store import NewImage, Store
from .pipeline import EmbedOptions, IndexReport, commit_batch, model_batches, start_run
from .walk import FileStat

log = logging.getLogger(__name__)

EncoderFactory = Callable[[str], object]  # device -> Encoder (not loaded yet)


def encoder_factory(spec: str, cache_dir: Path | None = None) -> EncoderFactory:
    """How each actor builds its model: from the model spec, like the engine does."""
    from ..models import load_encoder

    return functools.partial(load_encoder, spec, cache_dir=cache_dir)


class EmbedActor:
    """Ray Data callable class: one model per actor (one per GPU), loaded once; each call decodes
    and embeds a chunk of files with the local pipeline's `model_batches`."""

    def __init__(self, factory: EncoderFactory, device: str, options: EmbedOptions) -> None:
        self.encoder = factory(device)
        self.encoder.ensure_loaded()
        self.options = options

    def __call__(self, batch: dict) -> dict:
        started = time.time()
        files = [
            FileStat(str(p), int(n), float(m))
            for p, n, m in zip(batch["path"], batch["size"], batch["mtime"])
        ]
        loader, mean, std = model_batches(files, self.encoder, self.options)
        records: list[NewImage] = []
        vectors: list[np.ndarray] = []
        for pixels, recs in loader:
            vecs = iter(self.encoder.encode_image_tensors(pixels, mean, std) if pixels is not None else ())
            for r in recs:  # the vectors follow the records without error, in order
                records.append(r)
                vectors.append(next(vecs) if r.error is None else None)
        dim = next((len(v) for v in vectors if v is not None), 1)
        blank = np.zeros(dim, np.float32)
        return {
            "path": np.array([r.path for r in records]),
            "size": np.array([r.size for r in records], np.int64),
            "mtime": np.array([r.mtime for r in records], np.float64),
            "content_hash": np.array([r.content_hash or "" for r in records]),
            "width": np.array([r.width or 0 for r in records], np.int64),
            "height": np.array([r.height or 0 for r in records], np.int64),
            "error": np.array([r.error or "" for r in records]),
            "vector": np.stack([blank if v is None else v for v in vectors]).astype(np.float32),
            # when this actor worked on the chunk: the driver logs how long the actors were busy
            "chunk_span": np.tile(np.array([started, time.time()]), (len(records), 1)),
        }


def _write_shard(folder: Path, number: int, batch: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"shard-{int(time.time() * 1000)}-{number:06d}.npz"
    tmp = path.with_suffix(".tmp.npz")
    # Ray hands strings back as object arrays; store them as plain unicode (no pickle in shards)
    np.savez(
        tmp,
        **{
            k: np.asarray(v, dtype=str) if np.asarray(v).dtype == object else np.asarray(v)
            for k, v in batch.items()
        },
    )
    tmp.replace(path)
    return path


def _merge_shard(path: Path, store: Store, report: IndexReport, replace: dict[str, int], on_error) -> None:
    with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k].tolist() for k in npz.files if k != "vector"}  # an NpzFile re-reads per access
        vecs = npz["vector"]
    records = [
        NewImage(p, size, mtime, digest or None, width or None, height or None, err or None)
        for p, size, mtime, digest, width, height, err in zip(
            data["path"],
            data["size"],
            data["mtime"],
            data["content_hash"],
            data["width"],
            data["height"],
            data["error"],
        )
    ]
    ok = [i for i, r in enumerate(records) if r.error is None]
    commit_batch(store, records, vecs[ok] if ok else None, replace, report, on_error)
    path.unlink()


def index_folder_ray(
    folder: Path,
    store: Store,
    factory: EncoderFactory,
    options: EmbedOptions,
    *,
    address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
) -> IndexReport:
    """Index `folder` on a Ray cluster (`address` None: join or start a local one). By default one
    embedding actor per GPU of the cluster (two CPU actors where it has none), each with an equal
    share of the CPUs for its decoders. `options` as for the local pipeline; its `workers` is
    replaced by each actor's share of the CPUs."""
    try:
        import ray
    except ImportError as exc:
        raise ViewfinderError("--ray needs Ray: pip install 'viewfinder[dist]'") from exc
    started = time.perf_counter()
    on_error = options.on_error
    shards = store.folder / "shards"
    leftovers = IndexReport()
    for leftover in sorted(shards.glob("shard-*.npz")):  # written by a run that died before merging
        _merge_shard(leftover, store, leftovers, {}, on_error)
    plan, report = start_run(folder, store, on_error)
    report.embedded = leftovers.embedded
    report.failed += leftovers.failed
    if plan.to_embed:
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus_per_actor is None:
            gpus_per_actor = 1.0 if gpus else 0.0
        if actors is None:
            actors = max(1, int(gpus / gpus_per_actor)) if gpus_per_actor else 2
        cpus = max(1, int(resources.get("CPU", 1)) // actors)
        # the actor's own thread takes one of its CPUs, its reader processes the rest
        options = replace(options, workers=max(0, cpus - 1), progress=False, on_error=None)
        # chunks big enough that an actor's reader start-up is paid rarely, small enough that
        # every actor gets several and a crash loses little
        chunk = max(options.batch_size, min(8192, math.ceil(len(plan.to_embed) / (4 * actors))))
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # catalogue ids come out as in a local run
        ds = ray.data.from_items([{"path": f.path, "size": f.size, "mtime": f.mtime} for f in plan.to_embed])
        embedded = ds.map_batches(
            EmbedActor,
            fn_constructor_args=(factory, "cuda" if gpus_per_actor else "cpu", options),
            batch_size=chunk,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=gpus_per_actor or None,
            num_cpus=cpus,
            batch_format="numpy",
        )
        first, merging, t0 = 0.0, 0.0, time.perf_counter()
        busy_from, busy_to = float("inf"), 0.0
        for number, batch in enumerate(embedded.iter_batches(batch_size=None, batch_format="numpy")):
            t = time.perf_counter()
            first = first or t - t0
            span = batch.pop("chunk_span")
            busy_from, busy_to = min(busy_from, span[:, 0].min()), max(busy_to, span[:, 1].max())
            _merge_shard(_write_shard(shards, number, batch), store, report, plan.replace_ids, on_error)
            store.checkpoint("images", every_seconds=30.0)
            merging += time.perf_counter() - t
        log.info(
            "ray: %d actors x %g GPU, %d CPUs each, chunks of %d; first chunk after %.2f s, "
            "%d files in %.2f s, %.2f s of it merging; actors busy for %.2f s",
            actors,
            gpus_per_actor,
            cpus,
            chunk,
            first,
            len(plan.to_embed),
            time.perf_counter() - t0,
            merging,
            busy_to - busy_from,
        )
    store.checkpoint("images")
    report.seconds = time.perf_counter() - started
    return report
