"""The engine: the one object every face (library, CLI, API, web page) calls."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from .config import DEFAULT_MODEL, Config, load_config
from .errors import ModelMismatchError, QueryError
from .ingest.pipeline import IndexReport, index_folder
from .models import Encoder, load_encoder
from .query.confidence import ConfidenceModel, ScoreTailConfidence
from .query.parse import QueryPart, parse_query
from .query.results import SearchResult
from .query.search import search as run_search
from .store import Store

log = logging.getLogger(__name__)


class Engine:
    """An index folder opened with one model. Nothing heavy happens until it is needed: the
    model loads on the first encode, the vector index on the first search."""

    def __init__(self, config: Config, encoder: Encoder | None = None, confidence: ConfidenceModel | None = None) -> None:
        self.config = config
        ram_budget = None if config.index_ram_gb is None else int(config.index_ram_gb * 2**30)
        self.store = Store(config.db, config.index_kind, config.exact_limit, ram_budget)
        stored = self.store.catalog.get_meta("model_spec")
        spec = config.model or stored or DEFAULT_MODEL
        if stored is not None and config.model is not None and config.model != stored:
            raise ModelMismatchError(
                f"{config.db}: this index was built with model {stored!r}, not {config.model!r}; "
                "leave --model out to use the stored one, or choose a new --db"
            )
        self.model_spec = spec
        self._encoder = encoder
        self._bound = False
        self.confidence = confidence or ScoreTailConfidence()

    @classmethod
    def open(cls, db: str | Path | None = None, model: str | None = None, **settings: object) -> "Engine":
        """Open (or create) the index at `db` (a folder); settings as in `Config`."""
        return cls(load_config(db=db, model=model, **settings))

    # -- model ----------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The model, loaded on first use and checked against the one the index was built with."""
        if self._encoder is None:
            self._encoder = load_encoder(self.model_spec, self.config.device, self.config.cache_dir)
        if not self._bound:
            self._encoder.ensure_loaded()
            self.store.catalog.bind_model(self.model_spec, self._encoder.dim, self._encoder.fingerprint())
            if self.config.compile:
                self._encoder.compile_image_tower()
            self._bound = True
        return self._encoder

    @property
    def batch_size(self) -> int:
        """Large batches keep a GPU busy (docs/benchmarks.md); small ones bound CPU memory."""
        return self.config.batch_size or (256 if self.encoder.device == "cuda" else 32)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encoder.encode_images(list(images), batch_size=self.batch_size)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_texts(list(texts))

    # -- indexing -------------------------------------------------------------------------------
    def index(self, folder: str | Path, progress: bool = True, on_error: Callable[[str], None] | None = None) -> IndexReport:
        """Add, update and drop the images under `folder`; resumable, skips unchanged files."""
        return index_folder(
            Path(folder), self.store, self.encoder, batch_size=self.batch_size, workers=self.config.workers,
            max_pixels=self.config.max_pixels, checkpoint_seconds=self.config.checkpoint_seconds,
            progress=progress, on_error=on_error, gpu_decode=self.config.gpu_decode, gpu_decoders=self.config.gpu_decoders,
        )

    def index_distributed(self, folder: str | Path, address: str | None = None, actors: int = 2, gpus_per_actor: float = 0.0,
                          on_error: Callable[[str], None] | None = None) -> IndexReport:
        """Index on a Ray cluster (`address` None: a local one); same results as `index`."""
        from .ingest.distributed import index_folder_ray

        self.encoder  # noqa: B018  (bind the model to the catalogue before the workers embed with it)
        return index_folder_ray(Path(folder), self.store, self.model_spec, address, self.batch_size, actors,
                                gpus_per_actor, self.config.max_pixels, self.config.cache_dir, on_error)

    def add_texts(self, texts: Sequence[str], source: str = "user") -> int:
        """Store sentences or labels for image -> text search; returns how many were new."""
        clean = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
        if not clean:
            raise QueryError("no texts to add: give one sentence or label per line")
        vectors = self.encode_texts(clean)
        return self.store.catalog.add_texts(clean, vectors, source)

    # -- search ---------------------------------------------------------------------------------
    def search(
        self,
        query: str | bytes | Sequence[str | bytes] | Sequence[QueryPart] = (),
        k: int = 10,
        image: str | bytes | None = None,
        text_weight: float | None = None,
        offset: int = 0,
        target: str = "images",
        local: bool = True,
        mode: str | None = None,
    ) -> SearchResult:
        """Rank images (or, with target="texts", stored texts) for a query of text and/or image
        parts: `"a dog"`, `["2:red car", "-blurry"]`, `"photo.jpg"`, or text plus `image=`."""
        if k < 1 or offset < 0:
            raise QueryError(f"k={k}, offset={offset}: k must be at least 1 and offset not negative")
        if target not in ("images", "texts"):
            raise QueryError(f"target {target!r}: use 'images' or 'texts'")
        if isinstance(query, (list, tuple)) and query and isinstance(query[0], QueryPart):
            parts = list(query)  # type: ignore[arg-type]
        else:
            parts = parse_query(query, image=image, text_weight=text_weight, local=local)  # type: ignore[arg-type]
        return run_search(parts, self.store, self.encoder, target, k, offset, self.confidence, self.config.max_pixels,
                          mode or self.config.search_mode)

    def image_to_text(self, image: str | bytes, k: int = 10, offset: int = 0) -> SearchResult:
        """The stored texts (and captions) that best describe an image."""
        return self.search([image] if isinstance(image, str) else [image], k=k, offset=offset, target="texts")

    def caption(self, captioner: str = "vocab", overwrite: bool = False, ocr: bool = False, captions: bool = True,
                progress: bool = True, on_error: Callable[[str], None] | None = None):
        """Caption the images that have none (and read the text in them with ocr=True); resumable."""
        from .ingest.captions import caption_images
        from .models.captioner import load_captioner

        model = load_captioner(captioner, self.encoder, self.config.device) if captions else None
        return caption_images(self.store, model, self.encoder, overwrite=overwrite, ocr=ocr, captions=captions,
                              batch_size=self.batch_size, max_pixels=self.config.max_pixels,
                              progress=progress, on_error=on_error)

    # -- facts ----------------------------------------------------------------------------------
    def stats(self) -> dict:
        catalog = self.store.catalog
        return {
            "db": str(self.config.db),
            "model": catalog.get_meta("model_spec") or self.model_spec,
            "dim": self.store.dim,
            "weights": catalog.get_meta("model_fingerprint"),
            "images": catalog.count_images(),
            "failed": catalog.count_errors(),
            "texts": catalog.count_texts(),
            "captioned": catalog.count_captioned(),
            "index_kind": self.store.vectors("images").kind if catalog.count_images() else None,
        }

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
