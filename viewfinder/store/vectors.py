"""FAISS vector index over one catalogue collection, with ids equal to catalogue ids.

The index file is derived from the catalogue: beside it a small JSON records the catalogue
version it reflects. On open, a file whose version differs (a crash mid-index, a run by another
process) is rebuilt from the catalogue's vectors. Files are written to a temp name and renamed,
so a reader never sees half an index."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

KINDS = ("auto", "flat", "hnsw", "ivfpq")


@dataclass(frozen=True)
class IndexChoice:
    kind: str
    reason: str


def choose_kind(n: int, requested: str = "auto", exact_limit: int = 100_000) -> IndexChoice:
    """Exact search while it is fast enough; HNSW above that. IVF-PQ only when asked (it trades
    recall for memory, which only a collection that does not fit in RAM needs)."""
    if requested not in KINDS:
        raise ValueError(f"index kind {requested!r}: choose one of {', '.join(KINDS)}")
    if requested != "auto":
        return IndexChoice(requested, "requested")
    if n <= exact_limit:
        return IndexChoice("flat", f"{n} vectors <= exact limit {exact_limit}: exact search")
    return IndexChoice("hnsw", f"{n} vectors > exact limit {exact_limit}: HNSW")


class VectorIndex:
    def __init__(self, dim: int, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 128) -> None:
        import faiss

        self.dim, self.kind = dim, kind
        self._ef_search = ef_search
        self.dirty_removal = False  # HNSW cannot delete in place: rebuild before saving
        if kind == "flat":
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = 80
            inner.hnsw.efSearch = ef_search
            self.index = faiss.IndexIDMap2(inner)
        elif kind == "ivfpq":
            self.index = None  # built on the first add, when there is data to train on
        else:
            raise ValueError(f"unknown index kind {kind!r}")

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.index is None:
            self.index = _train_ivfpq(self.dim, vectors)
        self.index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def remove(self, ids: list[int]) -> None:
        if not ids or self.index is None:
            return
        if self.kind == "flat":
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))
        else:
            self.dirty_removal = True

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k); missing slots have id -1."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.index is None or len(self) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        k = min(k, len(self))
        if self.kind == "hnsw":
            import faiss

            faiss.downcast_index(self.index.index).hnsw.efSearch = max(self._ef_search, k)
        return self.index.search(queries, k)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: Path, version: int) -> None:
        import faiss

        if self.index is None:
            return
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)
        _write_json(path.with_name(path.name + ".json"), {"version": version, "kind": self.kind, "dim": self.dim, "count": len(self)})

    @classmethod
    def load(cls, path: Path, version: int, dim: int) -> "VectorIndex | None":
        """The saved index if it reflects catalogue `version`, else None."""
        import faiss

        meta_path = path.with_name(path.name + ".json")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("version") != version or meta.get("dim") != dim or not path.exists():
            return None
        try:
            raw = faiss.read_index(str(path))
        except RuntimeError as exc:
            log.warning("index file %s unreadable (%s); rebuilding it from the catalogue", path, exc)
            return None
        out = cls.__new__(cls)
        out.dim, out.kind, out.index, out._ef_search, out.dirty_removal = dim, meta["kind"], raw, 128, False
        return out

    @classmethod
    def build(cls, chunks, dim: int, kind: str) -> "VectorIndex":
        out = cls(dim, kind)
        for ids, vecs in chunks:
            out.add(ids, vecs)
        return out


def _train_ivfpq(dim: int, sample: np.ndarray, max_train: int = 100_000):
    import faiss

    # k-means cost grows with the sample: 100k points are plenty for the coarse quantiser
    sample = sample[np.random.default_rng(0).permutation(len(sample))[:max_train]] if len(sample) > max_train else sample
    nlist = int(max(1, min(65536, 4 * np.sqrt(max(len(sample), 1)), len(sample) // 39)))
    m = next(m for m in (64, 48, 32, 16, 8, 4, 2, 1) if dim % m == 0 and m <= dim // 4 or m == 1)
    index = faiss.index_factory(dim, f"IVF{nlist},PQ{m}", faiss.METRIC_INNER_PRODUCT)
    index.train(sample)
    index.nprobe = min(nlist, 32)
    return faiss.IndexIDMap2(index) if not isinstance(index, faiss.IndexIDMap2) else index


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
