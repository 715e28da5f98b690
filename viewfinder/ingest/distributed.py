"""Scale-out indexing on Ray Data: the same stages as the local pipeline (plan -> decode + embed ->
write), with decode + embed spread over an actor pool on a Ray cluster (CPU or GPU workers).

Each batch that comes back is first written as an embedding shard file under `<db>/shards/`,
then merged into the catalogue and deleted. A run that dies between the two merges the shards it
finds before planning, so a shard that was written is never recomputed; files already merged are
skipped by the ordinary incremental plan."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ViewfinderError
from ..store import NewImage, Store
from .pipeline import IndexReport, commit_batch, start_run
from .prepare import decode_for_model
from .walk import FileStat

log = logging.getLogger(__name__)


class EmbedActor:
    """Ray Data callable class: one model per actor, loaded once."""

    def __init__(self, spec: str, device: str, max_pixels: int, cache_dir: str | None) -> None:
        from ..models import load_encoder

        self.encoder = load_encoder(spec, device, Path(cache_dir) if cache_dir else None)
        self.encoder.ensure_loaded()
        split = self.encoder.uint8_transform()
        self.transform, self.mean, self.std = (
            split if split is not None else (self.encoder.image_transform(), None, None)
        )
        self.max_pixels = max_pixels

    def __call__(self, batch: dict) -> dict:
        import torch

        tensors, errors, shas, widths, heights = [], [], [], [], []
        for path in batch["path"]:
            record, tensor = decode_for_model(FileStat(str(path), 0, 0.0), self.transform, self.max_pixels)
            tensors.append(tensor)
            errors.append(record.error or "")
            shas.append(record.sha256 or "")
            widths.append(record.width or 0)
            heights.append(record.height or 0)
        ok = [t for t in tensors if t is not None]
        vecs = (
            self.encoder.encode_image_tensors(torch.stack(ok), self.mean, self.std)
            if ok
            else np.zeros((0, 1), np.float32)
        )
        dim = vecs.shape[1] if len(ok) else 1
        rows = np.zeros((len(tensors), dim), np.float32)
        rows[[i for i, t in enumerate(tensors) if t is not None]] = vecs
        return {
            **batch,
            "sha256": np.array(shas),
            "width": np.array(widths),
            "height": np.array(heights),
            "error": np.array(errors),
            "vector": rows,
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
    spec: str,
    *,
    max_pixels: int,
    address: str | None = None,
    batch_size: int = 64,
    actors: int = 2,
    gpus_per_actor: float = 0.0,
    cache_dir: Path | None = None,
    on_error: Callable[[str], None] | None = None,
) -> IndexReport:
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
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # catalogue ids come out as in a local run
        ds = ray.data.from_items([{"path": f.path, "size": f.size, "mtime": f.mtime} for f in plan.to_embed])
        embedded = ds.map_batches(
            EmbedActor,
            fn_constructor_args=(
                spec,
                "cuda" if gpus_per_actor else "cpu",
                max_pixels,
                str(cache_dir) if cache_dir else None,
            ),
            batch_size=batch_size,
            concurrency=actors,
            num_gpus=gpus_per_actor or None,
            batch_format="numpy",
        )
        for number, batch in enumerate(embedded.iter_batches(batch_size=None, batch_format="numpy")):
            _merge_shard(_write_shard(shards, number, batch), store, report, plan.replace_ids, on_error)
            store.checkpoint("images", every_seconds=30.0)
    store.checkpoint("images")
    report.seconds = time.perf_counter() - started
    return report
