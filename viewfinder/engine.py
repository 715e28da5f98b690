"""The engine: the one object every face (library, CLI, API, web page) calls. Every operation a
face offers is a method here; the faces only translate arguments and results."""

from __future__ import annotations

import io
import logging
import shutil
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image

from .config import DEFAULT_MODEL, Config, load_config
from .errors import (
    BadImageError,
    BusyError,
    ForbiddenError,
    ModelMismatchError,
    ModelSpecError,
    NotFoundError,
    QueryError,
    ViewfinderError,
)
from .images import HASH_PREFIX, read_image
from .ingest.reindex import finish_switch
from .models import SPEC_HELP as MODEL_SPEC_HELP
from .models import Encoder, load_encoder
from .query.confidence import ConfidenceModel, load_confidence
from .query.filters import Filters, filters_from, inline_filters
from .query.parse import MAX_WEIGHT, QueryInput, check_text, parse_query
from .query.regions import Heatmap, overlay
from .query.results import DuplicateGroup, SearchResult, alt_text
from .query.search import combine, encode_parts, image_heatmap
from .query.search import search as run_search
from .store import Collection, Store

if TYPE_CHECKING:
    from .eval.harness import EvalResult
    from .ingest.captions import CaptionReport
    from .ingest.pipeline import IndexReport
    from .train.contrastive import TrainResult

__all__ = ["MAX_WEIGHT", "MODEL_SPEC_HELP", "Engine", "IndexJob"]
log = logging.getLogger(__name__)
THUMB_SIZE = 320  # pixels on the longer side of a cached thumbnail


@dataclass
class IndexJob:
    """A background run (`index_in_background`, `reindex_in_background`): running, done or failed.
    `kind` is "index" or "reindex"; `folder` is the folder indexed, or for a re-index the model."""

    folder: str
    kind: str = "index"
    state: str = "running"
    embedded: int = 0
    failed: int = 0
    error: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


class Engine:
    """An index folder opened with one model. Nothing heavy happens until it is needed: the
    model loads on the first encode (or `load()`), the vector index on the first search."""

    def __init__(
        self,
        config: Config,
        encoder: Encoder | None = None,
        confidence: ConfidenceModel | None = None,
        create: bool = True,
    ) -> None:
        """create=False: an index must already be at `config.db` (searching a mistyped path
        must not make an empty index there)."""
        self.config = config
        self._new_db = not (Path(config.db) / "catalog.sqlite").exists()
        finish_switch(Path(config.db))  # a re-index that a crash cut between its two renames
        if not create and self._new_db:
            raise NotFoundError(
                f"{config.db}: no index here; build one with `viewfinder index FOLDER --db {config.db}`, "
                "or give --db the folder of an existing index"
            )
        self.store = self._open_store()
        stored = self.store.catalog.get_meta("model_spec")
        if stored is not None and config.model is not None and config.model != stored:
            raise ModelMismatchError(
                f"{config.db}: this index was built with model {stored!r}, not {config.model!r}; "
                "leave --model out to use the stored one, or choose a new --db"
            )
        self.model_spec = config.model or stored or DEFAULT_MODEL
        self._encoder = encoder
        self._bound = False
        self._confidence = confidence
        self._job: IndexJob | None = None
        self._job_lock = threading.Lock()

    @property
    def confidence(self) -> ConfidenceModel:
        """The model's calibrated confidence where it ships one (mini does), else the score-tail
        fallback (query/confidence.py)."""
        if self._confidence is None:
            self._confidence = load_confidence(self.encoder.calibration_path())
        return self._confidence

    def _open_store(self) -> Store:
        cfg = self.config
        ram_budget = None if cfg.index_ram_gb is None else int(cfg.index_ram_gb * 2**30)
        return Store(cfg.db, cfg.index_kind, cfg.exact_limit, ram_budget)

    @classmethod
    def open(cls, db: str | Path | None = None, model: str | None = None, **settings: object) -> "Engine":
        """Open (or create) the index at `db` (a folder); settings as in `Config`."""
        return cls(load_config(db=db, model=model, **settings))

    # -- model ----------------------------------------------------------------------------------
    def load(self) -> Encoder:
        """Load the model (once) and bind it to the catalogue: an index built with other weights
        is refused rather than searched with mixed embeddings."""
        if not self._bound:
            started = time.perf_counter()
            try:
                if self._encoder is None:
                    self._encoder = load_encoder(
                        self.model_spec, self.config.device, self.config.cache_dir, self.config.runtime
                    )
                self._encoder.ensure_loaded()
            except ModelSpecError:
                self._forget_new_db()
                raise
            try:
                self._bind(self._encoder)
            except ModelMismatchError:
                if self.model_spec != DEFAULT_MODEL or self.config.model is not None:
                    raise
                self._encoder = self._first_mini()
            if self.config.compile:
                self._encoder.compile_image_tower()
            self._bound = True
            log.info(
                "model %s ready on %s in %.1f s",
                self.model_spec,
                self._encoder.device,
                time.perf_counter() - started,
            )
        return self._encoder

    def _bind(self, encoder: Encoder) -> None:
        """Bind the catalogue to `encoder`'s weights; a fingerprint that an earlier viewfinder
        wrote for these same weights is rewritten the current way."""
        catalog = self.store.catalog
        fingerprint = encoder.fingerprint()
        try:
            catalog.bind_model(self.model_spec, encoder.dim, fingerprint)
        except ModelMismatchError:
            stored = catalog.get_meta("model_fingerprint")
            if (
                catalog.get_meta("model_spec") != self.model_spec
                or not stored
                or not encoder.adopts_fingerprint(stored)
            ):
                raise
            catalog.rebind_fingerprint(fingerprint)
            log.info("%s: model fingerprint %s rewritten as %s", self.config.db, stored, fingerprint)

    def _forget_new_db(self) -> None:
        """A mistyped --model must not leave an empty index behind where there was none."""
        if self._new_db and self.store.catalog.count_images(with_vectors=False) == 0:
            self.store.close()
            shutil.rmtree(self.config.db, ignore_errors=True)

    def _first_mini(self) -> Encoder:
        """An index that `mini` built before its v2 heads keeps searching with the v1 heads it was
        built with (`viewfinder reindex` moves it to the current ones)."""
        v1 = load_encoder("mini@v1", self.config.device, self.config.cache_dir, self.config.runtime)
        self._bind(v1)  # raises if not v1 either
        log.warning("%s was indexed with mini's v1 heads; searching with them", self.config.db)
        return v1

    @property
    def encoder(self) -> Encoder:
        """The loaded model (see `load`)."""
        return self.load()

    @property
    def batch_size(self) -> int:
        """Large batches keep a GPU busy (docs/benchmarks.md); small ones bound CPU memory."""
        return self.config.batch_size or (256 if self.encoder.device == "cuda" else 32)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encoder.encode_images(list(images), batch_size=self.batch_size)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_texts(list(texts))

    # -- indexing -------------------------------------------------------------------------------
    def index(
        self, folder: str | Path, progress: bool = True, on_error: Callable[[str], None] | None = None
    ) -> IndexReport:
        """Add, update and drop the images under `folder`; resumable, skips unchanged files.
        `on_error` gets one line per file that cannot be indexed (default: a log warning)."""
        from .ingest.metadata import fill_metadata
        from .ingest.pipeline import index_folder

        encoder = self.encoder  # loaded and bound before the lock: a waiting run needs no model yet
        with self.store.writing():
            report = index_folder(Path(folder), self.store, encoder, self._embed_options(progress, on_error))
            fill_metadata(self.store.catalog)  # dates, cameras, places: headers only
            return report

    def _embed_options(self, progress: bool, on_error: Callable[[str], None] | None):
        from .ingest.pipeline import EmbedOptions

        cfg = self.config
        return EmbedOptions(
            max_pixels=cfg.max_pixels,
            batch_size=self.batch_size,
            workers=cfg.workers,
            checkpoint_seconds=cfg.checkpoint_seconds,
            progress=progress,
            on_error=on_error,
            gpu_decode=cfg.gpu_decode,
            gpu_decoders=cfg.gpu_decoders,
            gpu_pillow_share=cfg.gpu_pillow_share,
            gpu_draft_processes=cfg.gpu_draft_processes,
        )

    def index_distributed(
        self,
        folder: str | Path,
        address: str | None = None,
        actors: int | None = None,
        gpus_per_actor: float | None = None,
        on_error: Callable[[str], None] | None = None,
        encoder_factory: Callable[[str], Encoder] | None = None,
    ) -> IndexReport:
        """Index on a Ray cluster (`address` None: a local one); same results as `index`. By
        default one embedding actor per GPU of the cluster (two CPU actors where it has none);
        `encoder_factory(device)` builds each actor's model (default: from the model spec)."""
        from .ingest.distributed import encoder_factory as from_spec
        from .ingest.distributed import index_folder_ray
        from .ingest.metadata import fill_metadata

        self.load()  # bind the model to the catalogue before the workers embed with it
        with self.store.writing():
            report = index_folder_ray(
                Path(folder),
                self.store,
                encoder_factory or from_spec(self.model_spec, self.config.cache_dir),
                self._embed_options(False, on_error),
                address=address,
                actors=actors,
                gpus_per_actor=gpus_per_actor,
            )
            fill_metadata(self.store.catalog)
            return report

    def watch(
        self,
        folder: str | Path,
        stop: threading.Event | None = None,
        on_report: Callable[[IndexReport], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        debounce_ms: int = 1000,
    ) -> None:
        """Index `folder`, then keep it indexed until `stop` is set (or Ctrl-C): each burst of
        file changes under it (new, changed, moved, deleted) runs the same incremental `index`,
        so moves keep their vectors and unchanged files cost a stat. Changes are gathered for
        `debounce_ms` so that a copy of many files is one run, not one per file."""
        from watchfiles import watch as file_changes

        target = Path(folder).expanduser().resolve()
        if not target.is_dir():
            raise NotFoundError(f"{folder}: no such folder; give the folder to keep indexed")

        def run_once() -> None:
            report = self.index(target, progress=False, on_error=on_error)
            if on_report is not None:
                on_report(report)

        # The first pass runs once the watcher is up (its first yield, at the latest after
        # `rust_timeout`), so a file that arrives during that pass is seen by a second one.
        first = True
        for changes in file_changes(
            target,
            stop_event=stop,
            debounce=debounce_ms,
            raise_interrupt=True,
            yield_on_timeout=True,
            rust_timeout=500,
        ):
            if first or changes:
                run_once()
                first = False

    def watch_in_background(self, folder: str | Path) -> threading.Event:
        """`watch` in a thread with its own engine (searches keep theirs); set the returned event to
        stop it. Used by `viewfinder serve --watch`."""
        stop = threading.Event()
        encoder = self.encoder

        def run() -> None:
            with Engine(self.config, encoder=encoder) as watcher:
                try:
                    watcher.watch(
                        folder,
                        stop,
                        on_report=lambda r: log.info("watch %s: %s", folder, r.summary()),
                        on_error=log.warning,
                    )
                except ViewfinderError as exc:
                    log.error("watch %s stopped: %s", folder, exc)

        threading.Thread(target=run, name="viewfinder-watch", daemon=True).start()
        return stop

    def index_in_background(self, folder: str | Path) -> str:
        """Start indexing `folder` in a thread and return its resolved path; `index_job()` tells
        how it goes. Only folders under `config.allowed_roots` may be indexed this way (the API's
        policy), and one run at a time."""
        if "\0" in str(folder):
            raise QueryError(
                "folder: contains a NUL character, which no path can hold; give the folder's path"
            )
        target = Path(folder).expanduser().resolve()
        roots = [Path(r).expanduser().resolve() for r in self.config.allowed_roots]
        if not any(target == r or r in target.parents for r in roots):
            raise ForbiddenError(
                f"folder: {folder} is not under an allowed root; add it to allowed_roots in the config"
            )
        encoder = self.encoder

        def work() -> IndexReport:
            # Its own engine (own catalogue connections and vector index); searches keep using
            # theirs and pick up each committed batch through the catalogue version.
            with Engine(self.config, encoder=encoder) as job_engine:
                return job_engine.index(target, progress=False)

        self._start_job(IndexJob(str(target)), work)
        return str(target)

    def _start_job(self, job: IndexJob, work: Callable[[], IndexReport]) -> None:
        """Run `work` in a thread as the one background job; `index_job()` shows its state."""
        with self._job_lock:
            if self._job is not None and self._job.state == "running":
                raise BusyError("an index run is already going; wait for it (GET /stats)")
            self._job = job

        def run() -> None:
            try:
                rep = work()
                done = IndexJob(job.folder, job.kind, "done", rep.embedded, len(rep.failed))
            except ViewfinderError as exc:
                done = IndexJob(job.folder, job.kind, "failed", error=str(exc))
            with self._job_lock:
                self._job = done

        threading.Thread(target=run, daemon=True).start()

    def reindex(
        self, model: str | None = None, progress: bool = True, on_error: Callable[[str], None] | None = None
    ) -> IndexReport:
        """Re-embed the whole index with `model` (default: the current `mini`) into a new index
        beside this one, while this one keeps answering searches; then switch to it (the old one
        stays as DB.previous). Resumable: a rerun skips what the new index already holds."""
        from .ingest.reindex import next_folder, rebuild_into, switch

        spec = model or DEFAULT_MODEL
        db = Path(self.config.db)
        with self.store.writing(), Engine(replace(self.config, db=next_folder(db), model=spec)) as target:
            report = rebuild_into(
                self.store, target.store, target.encoder, target._embed_options(progress, on_error)
            )
            encoder = target.encoder
        switch(db)
        old, self.store = self.store, self._open_store()
        self.config = replace(self.config, model=spec)
        self.model_spec, self._encoder, self._bound = spec, encoder, True
        old.close()
        return report

    def reindex_in_background(self, model: str | None = None) -> str:
        """Start `reindex` in a thread; `index_job()` tells how it goes. Returns the model spec."""
        spec = model or DEFAULT_MODEL
        load_encoder(
            spec, self.config.device, self.config.cache_dir, self.config.runtime
        )  # a bad spec fails here, not later
        self._start_job(IndexJob(spec, "reindex"), lambda: self.reindex(spec, progress=False))
        return spec

    def index_job(self) -> IndexJob | None:
        """The last background index run, if any."""
        with self._job_lock:
            return self._job

    def add_texts(self, texts: Sequence[str], source: str = "user") -> int:
        """Store sentences or labels for image -> text search; returns how many were new."""
        clean = list(
            dict.fromkeys(check_text(t, f"texts[{i}]").strip() for i, t in enumerate(texts) if t.strip())
        )
        if not clean:
            raise QueryError("no texts to add: give one sentence or label per line")
        vectors = self.encode_texts(clean)
        return self.store.catalog.add_texts(clean, vectors, source)

    def caption(
        self,
        captioner: str = "vocab",
        overwrite: bool = False,
        ocr: bool = False,
        captions: bool = True,
        progress: bool = True,
        on_error: Callable[[str], None] | None = None,
    ) -> CaptionReport:
        """Caption the images that have none with `captioner` (a spec as in models/captioner.py),
        and read the text in them with ocr=True; resumable. overwrite=True captions all again."""
        from .ingest.captions import caption_images
        from .models.captioner import load_captioner

        model = load_captioner(captioner, self.encoder, self.config.device) if captions else None
        with self.store.writing():
            return caption_images(
                self.store,
                model,
                self.encoder,
                overwrite=overwrite,
                ocr=ocr,
                captions=captions,
                batch_size=self.batch_size,
                max_pixels=self.config.max_pixels,
                progress=progress,
                on_error=on_error,
            )

    # -- search ---------------------------------------------------------------------------------
    def search(
        self,
        query: QueryInput = (),
        k: int = 10,
        image: str | bytes | None = None,
        text_weight: float | None = None,
        offset: int = 0,
        target: str = "images",
        local: bool = True,
        mode: str | None = None,
        regions: bool = False,
        filters: dict[str, str] | None = None,
    ) -> SearchResult:
        """Rank images (or stored texts) for a query of text and/or image parts.

        query: `"a dog"`, `["2:red car", "-blurry"]`, `"photo.jpg"`, raw image bytes, or a list
            of `{"text": ..., "weight": ...}` / `{"image": <data URI>, ...}` parts.
        image: an image to combine with the text (hybrid search); `text_weight` in 0..1 is the
            share of the text parts, the image gets the rest.
        k, offset: the page of hits (ranks offset+1 .. offset+k).
        target: "images", or "texts" to rank the stored texts and captions (image -> text).
        local: True when the query comes from this machine's user: paths and URLs are images.
            False for remote requests: only bytes and data URIs are images, so a query from the
            network never reads a local file or fetches a URL.
        mode: "vector", "lexical" (BM25 over captions, OCR text and paths) or "fused" (both by
            reciprocal rank); None uses `config.search_mode`.
        regions: give each image hit a heatmap of where the query matches (`hit.heatmap`;
            10 image encodings a hit with mini, 65 with other models: about a second or more a hit
            on a CPU).
        filters: {"after": "2023-06", "before": "2024", "camera": "canon", "folder": "holidays",
            "place": "France", "near": "48.85,2.35", "within": "20km", "type": "jpg"}
            (query/filters.py); the same can be written in a text query (`a dog after:2023-06`),
            where they win over these.
        """
        if k < 1 or offset < 0:
            raise QueryError(f"k={k}, offset={offset}: k must be at least 1 and offset not negative")
        try:
            collection = Collection(target)
        except ValueError:
            raise QueryError(f"target {target!r}: use 'images' or 'texts'") from None
        query, inline = inline_filters(query)
        chosen = _filters(filters, inline)
        parts = parse_query(query, image=image, text_weight=text_weight, local=local)
        return run_search(
            parts,
            self.store,
            self.encoder,
            collection=collection,
            k=k,
            offset=offset,
            confidence=self.confidence,
            max_pixels=self.config.max_pixels,
            mode=mode or self.config.search_mode,
            regions=regions,
            filters=chosen,
        )

    def explain_regions(self, image_id: int, query: QueryInput, local: bool = True) -> Heatmap:
        """Where in the indexed image `image_id` the query matches (query/regions.py)."""
        parts = parse_query(query, local=local)
        embeddings = encode_parts(parts, self.encoder, self.config.max_pixels)
        vector, _ = combine(parts, embeddings)
        return image_heatmap(self.image_path(image_id), vector, self.encoder, self.config.max_pixels)

    def overlay_png(self, image_id: int, heatmap: Heatmap | dict) -> bytes:
        """The image with a heatmap (from `explain_regions` or a hit's `heatmap`) laid over it."""
        if isinstance(heatmap, dict):
            heatmap = Heatmap(np.asarray(heatmap["values"], np.float32))
        image = read_image(self.image_path(image_id), self.config.max_pixels, draft_size=1024).image
        image.thumbnail((1024, 1024))
        buf = io.BytesIO()
        overlay(image, heatmap).save(buf, "PNG")
        return buf.getvalue()

    def image_to_text(
        self, image: str | bytes, k: int = 10, offset: int = 0, local: bool = True
    ) -> SearchResult:
        """The stored texts (and captions) that best describe an image (path, data URI or bytes)."""
        return self.search([], k=k, offset=offset, image=image, target="texts", local=local)

    # -- images by catalogue id -------------------------------------------------------------------
    def duplicates(self, level: str = "near", threshold: float | None = None) -> list[DuplicateGroup]:
        """Groups of duplicate images, largest first: "exact" (same bytes), "near" (the same
        picture re-encoded, resized, a little cropped) or "similar" (same scene); `threshold`
        overrides the level's cosine threshold (query/duplicates.py)."""
        from .query.duplicates import LEVELS, default_threshold, exact_groups, linked_groups

        if level not in LEVELS:
            raise QueryError(f"level {level!r}: use one of {', '.join(LEVELS)}")
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise QueryError(f"threshold {threshold}: a cosine similarity, between -1 and 1")
        catalog = self.store.catalog
        if level == "exact":
            found = [(ids, 1.0) for ids in exact_groups(catalog.content_hashes())]
            threshold = None
        else:
            threshold = default_threshold(level) if threshold is None else threshold
            dim = int(catalog.get_meta("model_dim") or 0)
            parts = list(catalog.iter_vectors(Collection.IMAGES, dim)) if dim else []
            if not parts:
                return []
            ids = np.concatenate([p[0] for p in parts])
            found = linked_groups(ids, np.concatenate([p[1] for p in parts]), threshold)
        records = catalog.get_images([i for ids, _ in found for i in ids])
        return [
            DuplicateGroup(level, score, threshold, ids, [records[i].path for i in ids])
            for ids, score in found
        ]

    def image_info(self, image: int | str | Path) -> dict:
        """What the catalogue holds about one image, by id or by file path: file, size, pixels,
        content hash, caption and where it came from, text read in it, or why it failed."""
        catalog = self.store.catalog
        if isinstance(image, int):
            rec = catalog.get_image(image)
        else:
            rec = catalog.image_at(str(Path(image).expanduser().resolve()))
        return _facts(rec)

    def browse(self, filters: dict[str, str] | None = None, offset: int = 0, limit: int = 50) -> dict:
        """The library without a query: the images that pass `filters` (keys as in `search`),
        newest first. {"total": how many pass, "images": the page's image_info dicts}."""
        if offset < 0 or not 1 <= limit <= 500:
            raise QueryError(f"offset={offset}, limit={limit}: offset not negative, limit in 1..500")
        total, records = self.store.catalog.browse(_filters(filters), offset, limit)
        return {"total": total, "images": [_facts(r) for r in records]}

    def image_path(self, image_id: int) -> Path:
        """The file of an indexed image; NotFoundError when the id or the file is gone."""
        rec = self.store.catalog.get_image(image_id)
        if not Path(rec.path).is_file():
            raise NotFoundError(
                f"image {image_id}: its file {Path(rec.path).name} is gone; re-index the folder"
            )
        return Path(rec.path)

    def thumbnail(self, image_id: int) -> Path:
        """A JPEG thumbnail of an indexed image, made once and cached under the index folder
        (keyed by content, so a changed file gets a new one)."""
        rec = self.store.catalog.get_image(image_id)
        digest = (rec.content_hash or "x").removeprefix(HASH_PREFIX)
        cache = Path(self.config.db) / "thumbnails" / f"{image_id}-{digest[:16]}.jpg"
        if not cache.exists():
            try:
                im = read_image(Path(rec.path), self.config.max_pixels, draft_size=THUMB_SIZE).image
            except BadImageError as exc:
                raise NotFoundError(f"image {image_id}: {exc}") from exc
            im.thumbnail((THUMB_SIZE, THUMB_SIZE))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_bytes(buf.getvalue())
            tmp.replace(cache)
        return cache

    # -- facts ----------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """How many images (embedded), failed files, stored texts and captioned images."""
        catalog = self.store.catalog
        return {
            "images": catalog.count_images(),
            "failed": catalog.count_errors(),
            "texts": catalog.count_texts(),
            "captioned": catalog.count_captioned(),
        }

    def failures(self, limit: int = 100) -> list[tuple[str, str]]:
        """(path, reason) of files that could not be indexed."""
        return self.store.catalog.errors(limit=limit)

    def stats(self) -> dict:
        catalog = self.store.catalog
        counts = self.counts()
        return {
            "db": str(self.config.db),
            "model": catalog.get_meta("model_spec") or self.model_spec,
            "dim": self.store.dim,
            "weights": catalog.get_meta("model_fingerprint"),
            **counts,
            "index_kind": self.store.vectors(Collection.IMAGES).kind if counts["images"] else None,
        }

    # -- evaluation and training (no index needed) -----------------------------------------------
    @staticmethod
    def evaluate(
        dataset: str,
        model: str = DEFAULT_MODEL,
        split: str = "test",
        report: Path | None = None,
        feature_cache: Path | None = None,
        config: Config | None = None,
        progress: bool = False,
    ) -> EvalResult:
        """Retrieval metrics of `model` on a data set's split, both directions; with `report`, a
        folder for metrics.json and plots. `feature_cache`: an npz of mini's frozen-tower features;
        `progress`: a bar while the images are embedded."""
        from .eval.report import evaluate as run_eval

        cfg = config or load_config()
        runtime = "torch" if feature_cache else cfg.runtime  # cached features are the torch towers'
        encoder = load_encoder(model, cfg.device, cfg.cache_dir, runtime)
        return run_eval(dataset, encoder, split, report, feature_cache, progress)

    @staticmethod
    def train(
        data: str,
        out: Path,
        model: str = DEFAULT_MODEL,
        epochs: int = 40,
        batch_size: int = 256,
        lr: float = 1e-3,
        seed: int = 0,
        progress: bool = True,
        config: Config | None = None,
    ) -> TrainResult:
        """Contrastive fine-tuning of `model` on image-caption pairs (a data set name, a folder
        with .txt captions, or a CSV): train split to learn, val split to stop early."""
        from .data.pairs import load_pairs
        from .train.contrastive import TrainConfig
        from .train.contrastive import train as run_train

        cfg = config or load_config()
        pairs = load_pairs(data)
        train_pairs = [p for p in pairs if p.split == "train"]
        val_pairs = [p for p in pairs if p.split == "val"] or train_pairs[: max(2, len(train_pairs) // 10)]
        encoder = load_encoder(model, cfg.device, cfg.cache_dir, runtime="torch")  # training is torch
        result = run_train(
            encoder,
            train_pairs,
            val_pairs,
            out,
            TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed),
            progress=progress,
        )
        Engine._refit_confidence(encoder, result.spec, val_pairs, data)
        return result

    @staticmethod
    def _refit_confidence(encoder: Encoder, spec: str, val_pairs: list, data: str) -> None:
        """Fit the trained model's confidence on its validation split and store it beside its
        weights, where the model has a place for one (mini's heads do)."""
        from .eval.calibration import fit_from_pairs
        from .eval.harness import embed_pairs

        target = load_encoder(spec, "cpu").calibration_path()
        if target is None:
            return
        emb = embed_pairs(encoder, val_pairs)
        try:
            fitted = fit_from_pairs(
                emb.images, emb.texts, [p.caption for p in val_pairs], f"viewfinder train {data}, val split"
            )
        except ValueError as exc:
            target.unlink(missing_ok=True)  # one fitted for earlier heads in this folder would lie
            log.warning("%s: no calibrated confidence (%s); searches use the score-tail one", spec, exc)
            return
        target.write_text(fitted.to_json() + "\n", encoding="utf-8")

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _facts(record) -> dict:
    """An image record as a dict, without the fields it has no value for, with its alt text."""
    facts = {k: v for k, v in asdict(record).items() if v is not None}
    facts["alt"] = alt_text(record.id, record.path, record.caption, record.caption_confidence)
    return facts


def _filters(flags: dict[str, str] | None, inline: Filters | None = None) -> Filters:
    """The filters of a search or browse: flags (or API fields) with the query's own on top."""
    chosen = filters_from(flags or {}).merged(inline or Filters()).checked()
    if chosen.place:
        from .ingest.places import require

        require()  # a clear "install this" rather than no hits
    return chosen
