"""FAISS vector index over one catalogue collection, with ids equal to catalogue ids.

The index file is derived from the catalogue: beside it a small JSON records the catalogue
version it reflects. On open, a file whose version differs (a crash mid-index, a run by another
process) is rebuilt from the catalogue's vectors. Files are written to a temp name and renamed,
so a reader never sees half an index."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import StorageError, storage_error

log = logging.getLogger(__name__)

KINDS = ("auto", "flat", "hnsw", "ivfpq")
HNSW_M = 32
# IVF-PQ scans this many of its lists, then re-ranks k x IVFPQ_REFINE candidates against the
# float32 vectors: at 10M vectors recall@10 0.988 in 3.1 ms, where PQ codes alone gave 0.245
# (docs/benchmarks.md; the number of lists scanned barely moved recall, the re-ranking did)
IVFPQ_NPROBE = 16
IVFPQ_REFINE = 64
# HNSW's recall@10 falls with size at efSearch 128: 0.995-0.998 at 1M, 0.896 (256-d) and 0.812
# (512-d) at 10M, where IVF-PQ with re-ranking keeps 0.983-0.993 (docs/benchmarks.md); between
# 1M and 10M nothing was measured, so the switch is placed near the last size measured good
HNSW_LIMIT = 2_000_000


@dataclass(frozen=True)
class IndexChoice:
    kind: str
    reason: str


def ram_bytes(kind: str, n: int, dim: int) -> int:
    """Memory an index needs while being searched fast (estimates from FAISS's layouts, each id
    map entry ~64 bytes; checked against measured RSS in benchmarks/bench_engine.py). HNSW walks
    its graph over the vectors, so those must stay in RAM; IVF-PQ scans its codes (one byte per
    sub-quantiser) and reads its re-ranking copies only for the candidates, which can come from disk."""
    per_vector = {"flat": 4 * dim, "hnsw": 4 * dim + 2 * HNSW_M * 4 + 16, "ivfpq": pq_bytes(dim) + 8}[kind]
    return n * (per_vector + 64)


def pq_bytes(dim: int) -> int:
    """Sub-quantisers of the IVF-PQ codes: about one per 4 dimensions, at most 128, and a divisor
    of `dim` as FAISS needs (256-d: 64 bytes; 512-d: 128, where 64 bytes of 8 dimensions each
    recalled 0.877 at 10M and 128 bytes 0.993; docs/benchmarks.md)."""
    return next(m for m in range(min(128, max(1, dim // 4)), 0, -1) if dim % m == 0)


def default_ram_budget() -> int:
    """Half of this machine's physical memory: the rest is for the model, decoding and the OS."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def choose_kind(
    n: int, dim: int = 256, requested: str = "auto", exact_limit: int = 100_000, ram_budget: int | None = None
) -> IndexChoice:
    """Exact search while it is fast enough (docs/benchmarks.md: 11 ms at 100k vectors); HNSW
    above that up to HNSW_LIMIT vectors and while its vectors and graph fit in the RAM budget;
    IVF-PQ with exact re-ranking beyond, which keeps only compact codes in RAM and the vectors on
    disk, and recalls more than HNSW at 10M."""
    if requested not in KINDS:
        raise ValueError(f"index kind {requested!r}: choose one of {', '.join(KINDS)}")
    if requested != "auto":
        return IndexChoice(requested, "requested")
    if n <= exact_limit:
        return IndexChoice("flat", f"{n:,} vectors <= exact limit {exact_limit:,}: exact search")
    budget = default_ram_budget() if ram_budget is None else ram_budget
    need = ram_bytes("hnsw", n, dim)
    if n > HNSW_LIMIT:
        why = f"{n:,} vectors > HNSW limit {HNSW_LIMIT:,} (its recall falls with size)"
    elif need > budget:
        why = (
            f"HNSW over {n:,} vectors would need {need / 2**30:.1f} GiB of RAM, "
            f"over the {budget / 2**30:.1f} GiB budget"
        )
    else:
        return IndexChoice(
            "hnsw", f"{n:,} vectors > exact limit {exact_limit:,}: HNSW ({need / 2**30:.1f} GiB of RAM)"
        )
    return IndexChoice("ivfpq", f"{why}: IVF-PQ codes in RAM, exact re-ranking from disk")


HNSW_EF_PER_HIT = 6  # filtered HNSW walks: efSearch ~ this x k / share of the collection kept
MAX_FILTERED_EF = 16_384


class VectorIndex:
    def __init__(self, dim: int, kind: str = "flat", expected: int = 0) -> None:
        import faiss

        self.dim, self.kind, self.expected = dim, kind, expected
        self.nprobe, self.refine = IVFPQ_NPROBE, IVFPQ_REFINE
        self.dirty_removal = False  # HNSW cannot delete in place: rebuild before saving
        self._mapped: BinaryIO | None = None  # the open file behind a memory-mapped index
        if kind == "flat":
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = 80
            self.index = faiss.IndexIDMap2(inner)
        elif kind == "ivfpq":
            self.index = None  # built on the first add, when there is data to train on
        else:
            raise ValueError(f"unknown index kind {kind!r}")

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        """The ids held, in the order they were added."""
        import faiss

        if self.index is None:
            return np.zeros(0, np.int64)
        if hasattr(self.index, "id_map"):
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        inv = faiss.extract_index_ivf(self.index).invlists  # IVF-PQ: ids live in the inverted lists
        return np.concatenate(
            [faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy() for i in range(inv.nlist)]
            or [np.zeros(0, np.int64)]
        )

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.index is None:
            self.index = _train_ivfpq(self.dim, vectors, max(self.expected, len(vectors)))
        self._own()
        self.index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def remove(self, ids: list[int]) -> None:
        if not ids or self.index is None:
            return
        if self.kind == "flat":
            self._own()
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))
        else:
            self.dirty_removal = True

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n_queries, k); missing slots have id -1. `allowed`: search only
        these ids (a FAISS IDSelector inside the search, not a filter after it)."""
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.index is None or len(self) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        k = min(k, len(self))
        sel, bits = None, None
        if allowed is not None and len(allowed):
            # a bitmap, not IDSelectorBatch's hash set: building that for 500,000 ids took ~50 ms
            mask = np.zeros(int(allowed.max()) + 1, bool)
            mask[allowed] = True
            bits = np.packbits(mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        if self.kind == "hnsw":
            # a selective filter leaves few allowed nodes along the graph walk: widen the walk in
            # proportion (bench_filters.py: at 1% kept, efSearch 128 found 0.31 of the true top 10)
            share = 1.0 if allowed is None else max(len(allowed), 1) / len(self)
            ef = max(128, k, min(MAX_FILTERED_EF, int(HNSW_EF_PER_HIT * k / share)))
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=sel)
        elif self.kind == "ivfpq":
            params = faiss.IndexRefineSearchParameters(
                k_factor=self.refine, base_index_params=faiss.SearchParametersIVF(nprobe=self.nprobe, sel=sel)
            )
        else:
            params = None if sel is None else faiss.SearchParameters(sel=sel)
        return self.index.search(queries, k, params=params)  # `bits` stays alive until this returns

    def _own(self) -> None:
        """A memory-mapped index is read-only (FAISS aborts on writes to it): before the first
        change, read it into memory, from the same open file even if it was replaced since."""
        if self._mapped is None:
            return
        import faiss

        self._mapped.seek(0)
        self.index = faiss.read_index(faiss.PyCallbackIOReader(self._mapped.read))
        self._mapped.close()
        self._mapped = None

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: Path, version: int) -> None:
        import faiss

        if self.index is None:
            return
        tmp = _tmp_beside(path)
        try:
            faiss.write_index(self.index, str(tmp))
            os.replace(tmp, path)
            _write_json(
                path.with_name(path.name + ".json"),
                {"version": version, "kind": self.kind, "dim": self.dim, "count": len(self)},
            )
        except (OSError, RuntimeError) as exc:  # faiss reports a failed write as RuntimeError
            tmp.unlink(missing_ok=True)
            # the catalogue holds every vector: an index file that is not written is rebuilt
            raise storage_error(path.parent, exc) or StorageError(
                f"{path}: cannot write the vector index ({exc}); check the disk and run again "
                "(everything indexed before is kept)"
            ) from exc

    @classmethod
    def load(cls, path: Path, version: int, dim: int, mmap: bool = True) -> "VectorIndex | None":
        """The saved index if it reflects catalogue `version`, else None. With `mmap`, the float32
        vectors stay in the file (the OS pages them in and may drop them), so a searching process
        holds no second copy of them."""
        import faiss

        meta_path = path.with_name(path.name + ".json")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("version") != version or meta.get("dim") != dim or not path.exists():
            return None
        try:
            handle = open(path, "rb") if mmap else None
            raw = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        except (OSError, RuntimeError) as exc:
            log.warning("index file %s unreadable (%s); rebuilding it from the catalogue", path, exc)
            return None
        out = cls(dim, "flat")
        out.kind, out.index, out._mapped = meta["kind"], raw, handle
        return out

    @classmethod
    def build(cls, chunks, dim: int, kind: str, expected: int = 0) -> "VectorIndex":
        out = cls(dim, kind, expected)
        for ids, vecs in chunks:
            out.add(ids, vecs)
        return out


def _train_ivfpq(dim: int, sample: np.ndarray, expected: int, max_train: int = 100_000):
    """IVF-PQ for `expected` vectors, trained on (up to max_train of) the first batch, wrapped in a
    re-ranking stage over float16 copies of the vectors (half of float32, so building a 10M x 512
    index needs 11 GB; memory-mapped on load). It only orders the candidates: the scores shown
    are recomputed from the catalogue's float32. (8-bit copies, a quarter, lost half the true
    neighbours of near-duplicates, whose scores differ in the third decimal.)"""
    import faiss

    # k-means cost grows with the sample: 100k points are plenty for the coarse quantiser
    sample = (
        sample[np.random.default_rng(0).permutation(len(sample))[:max_train]]
        if len(sample) > max_train
        else sample
    )
    nlist = int(max(1, min(65536, 4 * np.sqrt(expected), len(sample) // 39)))
    base = faiss.index_factory(dim, f"IVF{nlist},PQ{pq_bytes(dim)}", faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexRefine(
        base, faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    )
    index.train(sample)
    return faiss.IndexIDMap2(index)


def _tmp_beside(path: Path) -> Path:
    """A temporary name next to `path` that no other writer uses: a server rebuilding a stale
    index and `viewfinder index` in another process may save the same files at once, and with one
    shared name one's rename took the other's file away (each rename is atomic; the last wins)."""
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def _write_json(path: Path, data: dict) -> None:
    tmp = _tmp_beside(path)
    try:
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
