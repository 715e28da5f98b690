"""Scale-out indexing on Ray Data: the same stages as the local pipeline (plan -> decode + embed ->
write). Decoding runs as Ray tasks on every CPU of the cluster; embedding runs in an actor pool,
one actor per GPU where the cluster has GPUs (else CPU actors), fed with uint8 pixels so that the
GPU does the float conversion and normalisation, as in the local CUDA path.

Each batch that comes back is first written as an embedding shard file under `<db>/shards/`,
then merged into the catalogue and deleted. A run that dies between the two merges the shards it
finds before planning, so a shard that was written is never recomputed; files already merged are
skipped by the ordinary incremental plan."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import ViewfinderError
from ..store import NewImage, Store
from .pipeline import IndexReport, commit_batch, start_run
from .prepare import decode_for_model
from .walk import FileStat

log = logging.getLogger(__name__)

EncoderFactory = Callable[[str], object]  # device -> Encoder (not loaded yet)


def encoder_factory(spec: str, cache_dir: Path | None = None) -> EncoderFactory:
    """How each actor builds its model: from the model spec, like the engine does."""
    from ..models import load_encoder

    return functools.partial(load_encoder, spec, cache_dir=cache_dir)


def decode_batch(batch: dict, transform: Callable, max_pixels: int, blank: np.ndarray) -> dict:
    """Ray Data task: files -> the model's input pixels (uint8 where the model's transform splits)
    plus what the catalogue records; a file that cannot be used gets `blank` pixels (so every
    batch has one shape) and its reason."""
    pixels, errors, shas, widths, heights = [], [], [], [], []
    for path, size, mtime in zip(batch["path"], batch["size"], batch["mtime"]):
        record, tensor = decode_for_model(FileStat(str(path), int(size), float(mtime)), transform, max_pixels)
        pixels.append(blank if tensor is None else np.asarray(tensor))
        errors.append(record.error or "")
        shas.append(record.sha256 or "")
        widths.append(record.width or 0)
        heights.append(record.height or 0)
    return {
        **batch,
        "sha256": np.array(shas),
        "width": np.array(widths),
        "height": np.array(heights),
        "error": np.array(errors),
        "pixels": np.stack(pixels),
    }


class EmbedActor:
    """Ray Data callable class: one model per actor (one per GPU), loaded once."""

    def __init__(self, factory: EncoderFactory, device: str, mean: tuple | None, std: tuple | None) -> None:
        self.encoder = factory(device)
        self.encoder.ensure_loaded()
        self.mean, self.std = mean, std

    def __call__(self, batch: dict) -> dict:
        import torch

        pixels = batch.pop("pixels")
        ok = np.flatnonzero(batch["error"] == "")
        vecs = (
            self.encoder.encode_image_tensors(torch.from_numpy(pixels[ok]), self.mean, self.std)
            if len(ok)
            else np.zeros((0, 1), np.float32)
        )
        rows = np.zeros((len(pixels), vecs.shape[1]), np.float32)
        rows[ok] = vecs
        return {**batch, "vector": rows}


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
    data = np.load(path, allow_pickle=False)
    records, vectors = [], []
    for i, p in enumerate(data["path"].tolist()):
        err = str(data["error"][i]) or None
        records.append(
            NewImage(
                p,
                int(data["size"][i]),
                float(data["mtime"][i]),
                str(data["sha256"][i]) or None,
                int(data["width"][i]) or None,
                int(data["height"][i]) or None,
                err,
            )
        )
        if not err:
            vectors.append(data["vector"][i])
    commit_batch(store, records, np.stack(vectors) if vectors else None, replace, report, on_error)
    path.unlink()


def index_folder_ray(
    folder: Path,
    store: Store,
    factory: EncoderFactory,
    worker_transform: tuple,
    *,
    max_pixels: int,
    address: str | None = None,
    batch_size: int = 256,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    on_error: Callable[[str], None] | None = None,
) -> IndexReport:
    """Index `folder` on a Ray cluster (`address` None: join or start a local one). By default one
    embedding actor per GPU of the cluster (two CPU actors where it has none); decoding uses the
    remaining CPUs. `worker_transform` is the driver's encoder's `worker_transform()`."""
    try:
        import ray
    except ImportError as exc:
        raise ViewfinderError("--ray needs Ray: pip install 'viewfinder[dist]'") from exc
    started = time.perf_counter()
    shards = store.folder / "shards"
    leftovers = IndexReport()
    for leftover in sorted(shards.glob("shard-*.npz")):  # written by a run that died before merging
        _merge_shard(leftover, store, leftovers, {}, on_error)
    plan, report = start_run(folder, store)
    report.embedded, report.failed = leftovers.embedded, leftovers.failed
    if plan.to_embed:
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus_per_actor is None:
            gpus_per_actor = 1.0 if gpus else 0.0
        if actors is None:
            actors = max(1, int(gpus / gpus_per_actor)) if gpus_per_actor else 2
        transform, mean, std = worker_transform
        blank = np.zeros_like(np.asarray(transform(Image.new("RGB", (256, 256)))))
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # catalogue ids come out as in a local run
        ds = ray.data.from_items([{"path": f.path, "size": f.size, "mtime": f.mtime} for f in plan.to_embed])
        decoded = ds.map_batches(
            decode_batch,
            fn_kwargs={"transform": transform, "max_pixels": max_pixels, "blank": blank},
            batch_size=max(1, batch_size // 4),  # small tasks keep every decoder busy
            batch_format="numpy",
        )
        embedded = decoded.map_batches(
            EmbedActor,
            fn_constructor_args=(factory, "cuda" if gpus_per_actor else "cpu", mean, std),
            batch_size=batch_size,
            concurrency=actors,
            num_gpus=gpus_per_actor or None,
            batch_format="numpy",
        )
        first, merging, t0 = 0.0, 0.0, time.perf_counter()
        for number, batch in enumerate(embedded.iter_batches(batch_size=None, batch_format="numpy")):
            t = time.perf_counter()
            first = first or t - t0
            _merge_shard(_write_shard(shards, number, batch), store, report, plan.replace_ids, on_error)
            store.checkpoint("images", every_seconds=30.0)
            merging += time.perf_counter() - t
        log.info(
            "ray: %d actors x %g GPU; first batch after %.2f s, %d files in %.2f s, %.2f s of it merging",
            actors,
            gpus_per_actor,
            first,
            len(plan.to_embed),
            time.perf_counter() - t0,
            merging,
        )
    store.checkpoint("images")
    report.seconds = time.perf_counter() - started
    return report
