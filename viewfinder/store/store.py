"""A database folder: `catalog.sqlite` plus one FAISS file per collection (images, texts),
each index kept in step with the catalogue version."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .catalog import Collection, ImageCatalog
from .vectors import IndexChoice, VectorIndex, choose_kind

log = logging.getLogger(__name__)


SAMPLE_SIZE = 1024  # stored vectors drawn for a query's score statistics (query/confidence.py)


class Store:
    def __init__(
        self,
        folder: Path,
        index_kind: str = "auto",
        exact_limit: int = 100_000,
        ram_budget: int | None = None,
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.catalog = ImageCatalog(folder / "catalog.sqlite")
        self.index_kind, self.exact_limit, self.ram_budget = index_kind, exact_limit, ram_budget
        self._indexes: dict[str, tuple[int, VectorIndex]] = {}
        self._lock = threading.Lock()
        self._last_save = time.monotonic()
        self._sample_key: tuple | None = None
        self._sample = None

    @property
    def dim(self) -> int | None:
        value = self.catalog.get_meta("model_dim")
        return int(value) if value else None

    def index_path(self, collection: Collection) -> Path:
        return self.folder / f"{collection}.faiss"

    def vectors(self, collection: Collection) -> VectorIndex:
        """The index for `collection`, loaded or rebuilt when the catalogue moved on."""
        version = self.catalog.version(collection)
        with self._lock:
            held = self._indexes.get(collection)
            if held is not None and held[0] == version:
                return held[1]
            # let go of the stale index first: two copies of a large one may not fit in RAM
            self._indexes.pop(collection, None)
            held = None
            dim = self.dim or 0
            index = VectorIndex.load(self.index_path(collection), version, dim) if dim else None
            if index is None:
                index = self.rebuild(collection)
            self._indexes[collection] = (version, index)
            return index

    def rebuild(self, collection: Collection) -> VectorIndex:
        dim = self.dim or 1
        n = self.catalog.count_images() if collection == Collection.IMAGES else self.catalog.count_texts()
        choice = self.choose(collection, n)
        log.info("building %s index (%s) from the catalogue: %s", collection, choice.kind, choice.reason)
        index = VectorIndex.build(self.catalog.iter_vectors(collection, dim), dim, choice.kind, expected=n)
        if n:
            index.save(self.index_path(collection), self.catalog.version(collection))
        return index

    def choose(self, collection: Collection, n: int) -> IndexChoice:
        return choose_kind(
            n,
            self.dim or 1,
            self.index_kind if collection == Collection.IMAGES else "flat",
            self.exact_limit,
            self.ram_budget,
        )

    def note_change(self, collection: Collection, index: VectorIndex) -> None:
        """After the caller applied a committed catalogue change to `index` in memory."""
        with self._lock:
            self._indexes[collection] = (self.catalog.version(collection), index)

    def checkpoint(self, collection: Collection, every_seconds: float = 0.0) -> None:
        """Write the in-memory index to disk (at most every `every_seconds`)."""
        if time.monotonic() - self._last_save < every_seconds:
            return
        with self._lock:
            held = self._indexes.get(collection)
        if held is None:
            return
        version, index = held
        if index.dirty_removal or (
            collection == Collection.IMAGES and index.kind != self.choose(collection, len(index)).kind
        ):
            # rebuilt from the catalogue with the old one let go first: a large index may not fit
            # twice (searches wait for the new one)
            del index, held
            with self._lock:
                self._indexes.pop(collection, None)
                self._indexes[collection] = (version, self.rebuild(collection))
        else:
            index.save(self.index_path(collection), version)
        self._last_save = time.monotonic()

    def sample(self, collection: Collection, n: int = SAMPLE_SIZE):
        """A fixed random sample of stored vectors (for score statistics), cached per version."""
        key = (collection, self.catalog.version(collection), n)
        if self._sample_key != key:
            self._sample = self.catalog.sample_vectors(collection, self.dim or 1, n)
            self._sample_key = key
        return self._sample

    def verify(self) -> list[str]:
        """What is wrong between the catalogue and the vector indexes (empty: nothing): each id
        with a vector in the catalogue is in the index once, and the index holds nothing else."""
        import numpy as np

        problems = []
        for collection in (Collection.IMAGES, Collection.TEXTS):
            wanted = np.concatenate(
                [ids for ids, _ in self.catalog.iter_vectors(collection, self.dim or 1)]
                or [np.zeros(0, np.int64)]
            )
            held = self.vectors(collection).ids()
            distinct = np.unique(held)
            if len(distinct) != len(held):
                problems.append(f"{collection}: {len(held) - len(distinct)} ids twice in the vector index")
            missing, orphans = np.setdiff1d(wanted, distinct), np.setdiff1d(distinct, wanted)
            if len(missing):
                problems.append(f"{collection}: {len(missing)} catalogue vectors not in the index")
            if len(orphans):
                problems.append(f"{collection}: {len(orphans)} index entries not in the catalogue")
        return problems

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One writing run (index, reindex, captions) per index folder across processes: a second
        one waits, with a message, and then works on what the first one left."""
        with open(self.folder / "writer.lock", "a+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "?"
                log.warning(
                    "%s: another viewfinder process (pid %s) is writing to this index; waiting for it",
                    self.folder,
                    holder,
                )
                fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def close(self) -> None:
        self.catalog.close()
