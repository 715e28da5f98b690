"""Engine benchmark: CPU indexing rate on real images, and query latency of the vector index at
10k / 100k / 1M stored vectors, exact vs ANN, with ANN recall@10 against exact.

    python benchmarks/bench_engine.py                      # everything (about 15 min on 2 cores)
    python benchmarks/bench_engine.py --images 0           # index part only
    python benchmarks/bench_engine.py --sizes 10000 100000 --images 1000

    python benchmarks/bench_engine.py --images 0 --sizes 1000000 --dim 512
    python benchmarks/bench_engine.py --images 0 --sizes 1000000 --kinds ivfpq --ivfpq-grid

The index part uses synthetic vectors clustered around mini's real embeddings (see real_centres);
each index is built from a stream of chunks and searched memory-mapped, as the store does."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def percentile_ms(times: list[float], q: float) -> float:
    return float(np.percentile(np.array(times) * 1000, q))


def bench_indexing(n_images: int, model: str, workers: int, batch_size: int) -> list[tuple]:
    """Index n real images (openclipart PNGs, whole categories in path order) from scratch."""
    from viewfinder import Engine

    src = sorted(Path("/usr/share/openclipart/png").rglob("*.png"))
    if not src:
        raise SystemExit("openclipart-png is not installed: apt-get install openclipart-png")
    tmp = Path(tempfile.mkdtemp(prefix="vf-bench-"))
    folder = tmp / "images"
    folder.mkdir()
    for i, f in enumerate(src[:: max(1, len(src) // n_images)][:n_images]):
        shutil.copy2(f, folder / f"{i:05d}_{f.name}")
    rows = []
    with Engine.open(tmp / "db", model=model, workers=workers, batch_size=batch_size) as engine:
        engine.load()  # the model loads outside the timed region
        rep = engine.index(folder, progress=False)
        rows.append(
            (
                f"index {rep.scanned} real images ({model}, {workers} workers, batch {batch_size})",
                f"{rep.images_per_second:.1f} images/s",
                f"{rep.seconds:.1f} s total, {len(rep.failed)} failed",
            )
        )
        again = engine.index(folder, progress=False)
        rows.append(
            ("re-index, nothing changed", f"{again.seconds:.2f} s", f"{again.unchanged} unchanged skipped")
        )
        times = []
        for q in ["a dog", "a red car", "a house with a garden", "a smiling sun", "a musical instrument"] * 8:
            t = time.perf_counter()
            engine.search(q, k=10)
            times.append(time.perf_counter() - t)
        rows.append(
            (
                f"engine text query end to end ({engine.store.catalog.count_images()} images)",
                f"p50 {percentile_ms(times, 50):.1f} ms",
                f"p95 {percentile_ms(times, 95):.1f} ms",
            )
        )
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


def bench_photo_sizes(
    n: int, sizes: list[str], model: str, workers: int, batch_size: int, formats: list[str]
) -> list[tuple]:
    """Index n synthetic photo-like images of each size and format (benchmarks/common.py), model
    loaded first: phone-size photos against smaller ones, where JPEG draft decoding should make
    them equal; HEIC and PNG have no reduced-size decode, so they pay for every pixel."""
    from viewfinder import Engine

    from common import make_jpegs

    rows = []
    for size, ext in [(size, ext) for ext in formats for size in sizes]:
        w, h = (int(v) for v in size.split("x"))
        tmp = Path(tempfile.mkdtemp(prefix="vf-bench-"))
        files = make_jpegs(tmp / "images", n, sizes=((w, h),), ext=ext)
        mb = sum(f.stat().st_size for f in files) / len(files) / 1e6
        with Engine.open(tmp / "db", model=model, workers=workers, batch_size=batch_size) as engine:
            engine.load()
            rep = engine.index(tmp / "images", progress=False)
            runtime = engine.encoder.runtime
        rows.append(
            (
                f"index {n} {size} {ext.upper()}s ({mb:.1f} MB; {model} on {runtime}, {workers} workers)",
                f"{rep.images_per_second:.1f} images/s",
                f"{rep.seconds:.1f} s total, {len(rep.failed)} failed",
            )
        )
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def real_centres(dim: int) -> tuple[np.ndarray, str]:
    """mini's embeddings of the real data-set images (cached tower features through the shipped
    heads) as cluster centres, so synthetic collections have the structure of real ones; random
    centres where the features are not there. For another width the 256-d embeddings go through a
    fixed random projection, which keeps their neighbourhoods (Johnson-Lindenstrauss)."""
    feats = sorted(Path("data/features").glob("*.npz"))
    if feats:
        import torch

        from viewfinder.models.mini import load_heads, shipped_heads_path

        heads, _ = load_heads(shipped_heads_path())
        heads.eval()
        raw = np.concatenate([np.load(f)["image"].astype(np.float32) for f in feats])
        with torch.no_grad():
            c = heads.image(torch.from_numpy(raw)).numpy()
        origin = f"{len(c)} real mini image embeddings"
        if c.shape[1] != dim:
            c = c @ np.random.default_rng(2).standard_normal((c.shape[1], dim)).astype(np.float32)
            origin += f", projected to {dim}-d"
        return c / np.linalg.norm(c, axis=1, keepdims=True), origin
    c = np.random.default_rng(1).standard_normal((5000, dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True), "5000 random centres"


def clustered(centres: np.ndarray, n: int, rng, spread: float = 0.5) -> np.ndarray:
    """n unit vectors, each a random centre plus noise of norm ~spread (cos ~0.9 to its centre)."""
    x = centres[rng.integers(0, len(centres), n)] + spread * rng.standard_normal(
        (n, centres.shape[1]), dtype=np.float32
    ) / np.sqrt(centres.shape[1])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def collection(centres: np.ndarray, n: int, step: int = 500_000):
    """The same n vectors on every call, a chunk at a time, so that no run holds them twice."""
    rng = np.random.default_rng(0)
    for i in range(0, n, step):
        yield np.arange(i, min(n, i + step), dtype=np.int64), clustered(centres, min(step, n - i), rng)


def logged(chunks, n: int, label: str, every: int = 2_000_000):
    """Pass the chunks through, printing how many were added and when: a multi-minute build shows
    its rate, so a run that will not finish in time can be told early."""
    t, done = time.perf_counter(), 0
    for ids, vecs in chunks:
        yield ids, vecs
        done += len(ids)
        if n >= every and (done % every < len(ids) or done == n):
            print(f"  {label}: {done:,} / {n:,} added in {time.perf_counter() - t:,.0f} s", flush=True)


def anon_rss() -> int:
    """Anonymous resident memory of this process: what a memory-mapped file does not count in."""
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def _release_freed_memory() -> None:
    """Hand freed heap back to the OS, so that the next RSS delta is the loaded index alone."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def bench_index_kinds(
    sizes: list[int],
    dim: int,
    kinds: list[str],
    queries: int = 200,
    grid: bool = False,
    query_threads: int = 0,
) -> list[tuple]:
    """Build each kind from a stream of chunks, write it, then search it the way viewfinder does:
    loaded back memory-mapped. Memory is the anonymous RSS the loaded index adds after the
    queries (vectors in a mapped file are page cache, shared and evictable, and not counted).
    `query_threads`: FAISS threads for the searches (0: as for the build, all cores)."""
    import faiss

    from viewfinder.store.vectors import VectorIndex

    centres, origin = real_centres(dim)
    print(f"synthetic collections around {origin}", flush=True)
    q = clustered(
        centres, queries, np.random.default_rng(99)
    )  # queries near stored items, as real queries are
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="vf-index-bench-"))
    for n in sizes:
        truth = _exact_top10(collection(centres, n), q)
        for kind in kinds:
            t = time.perf_counter()
            impl = USearchIndex if kind == "usearch" else VectorIndex
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            index = impl.build(logged(collection(centres, n), n, kind), dim, kind, expected=n)
            build = time.perf_counter() - t
            if query_threads:
                faiss.omp_set_num_threads(query_threads)
            index.save(tmp / "index.bin", version=1)
            del index
            _release_freed_memory()
            before = anon_rss()
            index = impl.load(tmp / "index.bin", 1, dim)
            settings = (
                [(32, 16)]
                if kind != "ivfpq"
                else (
                    [(p, r) for p in (16, 32, 64) for r in (4, 16, 64)]
                    if grid
                    else [(index.nprobe, index.refine)]
                )
            )
            for nprobe, refine in settings:
                index.nprobe, index.refine = nprobe, refine
                cold, _ = _time_queries(index, q)  # pages of the mapped file come from disk on first touch
                times, found = _time_queries(index, q)
                t = time.perf_counter()
                for i in range(0, len(q), 64):
                    index.search(q[i : i + 64], 10)
                per_batch64 = (time.perf_counter() - t) / max(1, len(q) // 64) * 1000
                recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
                label = f"{n:>10,} x {dim}  {kind:<5}" + (
                    f" nprobe {nprobe:<2} refine {refine:<2}" if kind == "ivfpq" else ""
                )
                rows.append(
                    (
                        label,
                        f"p50 {percentile_ms(times, 50):7.2f} ms  p95 {percentile_ms(times, 95):7.2f} ms",
                        f"batch 64: {per_batch64:7.1f} ms; first pass p50 {percentile_ms(cold, 50):.2f} ms; "
                        f"recall@10 {recall:.3f}; build {build:.1f} s; "
                        f"RAM {(anon_rss() - before) / 2**20:,.0f} MiB; file "
                        f"{(tmp / 'index.bin').stat().st_size / 2**20:,.0f} MiB",
                    )
                )
                print(rows[-1], flush=True)
            del index
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


class USearchIndex:
    """usearch's HNSW (connectivity 32, expansion 80 / 128 like the FAISS HNSW row), behind the
    same build / save / load / search calls as VectorIndex, loaded as a memory-mapped view."""

    nprobe = refine = 0

    def __init__(self, index) -> None:
        self.index = index

    @classmethod
    def build(cls, chunks, dim: int, kind: str, expected: int = 0) -> "USearchIndex":
        from usearch.index import Index

        index = Index(
            ndim=dim, metric="ip", dtype="f32", connectivity=32, expansion_add=80, expansion_search=128
        )
        for ids, vecs in chunks:
            index.add(ids, vecs)
        return cls(index)

    def save(self, path: Path, version: int) -> None:
        self.index.save(str(path))

    @classmethod
    def load(cls, path: Path, version: int, dim: int) -> "USearchIndex":
        from usearch.index import Index

        return cls(Index.restore(str(path), view=True))

    def search(self, queries: np.ndarray, k: int):
        found = self.index.search(queries, k)  # one query comes back as 1-d arrays
        return np.atleast_2d(found.distances), np.atleast_2d(found.keys).astype(np.int64)


def _time_queries(index, q: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    times, found = [], []
    for row in q:
        t = time.perf_counter()
        _, got = index.search(row[None, :], 10)
        times.append(time.perf_counter() - t)
        found.append(got[0])
    return times, found


def _exact_top10(chunks, q: np.ndarray) -> list[np.ndarray]:
    """Exact top 10 by a scan over the chunks (never the whole collection at once)."""
    best_s = np.full((len(q), 10), -np.inf, np.float32)
    best_i = np.zeros((len(q), 10), np.int64)
    for ids, data in chunks:
        s = q @ data.T
        top = np.argpartition(-s, 10, axis=1)[:, :10]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], axis=1)
        cand_i = np.concatenate([best_i, ids[top]], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return list(best_i)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000, help="real images to index (0: skip)")
    ap.add_argument("--model", default="mini")
    ap.add_argument(
        "--photo-sizes", nargs="*", default=[], help="also index --photos synthetic JPEGs of each WxH size"
    )
    ap.add_argument("--photos", type=int, default=60, help="images per --photo-sizes size and format")
    ap.add_argument("--photo-formats", nargs="+", default=["jpg"], help="jpg, png, heic (pillow-heif)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256, help="mini's embedding size")
    ap.add_argument(
        "--kinds", nargs="+", default=["flat", "hnsw", "ivfpq"], help="also: usearch (pip install usearch)"
    )
    ap.add_argument("--ivfpq-grid", action="store_true", help="IVF-PQ at several nprobe / re-rank factors")
    ap.add_argument("--queries", type=int, default=200, help="queries per index")
    ap.add_argument(
        "--query-threads",
        type=int,
        default=0,
        help="FAISS threads for searching (2 on a larger machine compares with 2 cores); builds use all",
    )
    args = ap.parse_args()
    import faiss

    rows = []
    if args.images:
        rows += bench_indexing(args.images, args.model, args.workers, args.batch_size)
    if args.photo_sizes:
        rows += bench_photo_sizes(
            args.photos, args.photo_sizes, args.model, args.workers, args.batch_size, args.photo_formats
        )
    if args.sizes:
        rows += bench_index_kinds(
            args.sizes, args.dim, args.kinds, args.queries, args.ivfpq_grid, args.query_threads
        )
    searching = f", FAISS searches on {args.query_threads} threads" if args.query_threads else ""
    print(f"\nviewfinder engine benchmark: {os.cpu_count()} CPU cores{searching}, faiss {faiss.__version__}")
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}} | {'result':<32} | notes")
    print("-" * (width + 60))
    for what, result, notes in rows:
        print(f"{what:<{width}} | {result:<32} | {notes}")


if __name__ == "__main__":
    main()
