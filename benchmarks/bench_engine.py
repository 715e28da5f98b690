"""Engine benchmark: CPU indexing rate on real images, and query latency of the vector index at
10k / 100k / 1M stored vectors, exact vs ANN, with ANN recall@10 against exact.

    python benchmarks/bench_engine.py                      # everything (about 15 min on 2 cores)
    python benchmarks/bench_engine.py --images 0           # index part only
    python benchmarks/bench_engine.py --sizes 10000 100000 --images 1000

The index part uses synthetic unit vectors (search speed does not depend on where vectors come
from, recall does a little: real embeddings cluster more, which helps HNSW)."""

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
        engine.encoder  # load the model outside the timed region
        rep = engine.index(folder, progress=False)
        rows.append((f"index {rep.scanned} real images ({model}, {workers} workers, batch {batch_size})",
                     f"{rep.images_per_second:.1f} images/s", f"{rep.seconds:.1f} s total, {len(rep.failed)} failed"))
        again = engine.index(folder, progress=False)
        rows.append(("re-index, nothing changed", f"{again.seconds:.2f} s", f"{again.unchanged} unchanged skipped"))
        times = []
        for q in ["a dog", "a red car", "a house with a garden", "a smiling sun", "a musical instrument"] * 8:
            t = time.perf_counter()
            engine.search(q, k=10)
            times.append(time.perf_counter() - t)
        rows.append((f"engine text query end to end ({engine.store.catalog.count_images()} images)",
                     f"p50 {percentile_ms(times, 50):.1f} ms", f"p95 {percentile_ms(times, 95):.1f} ms"))
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


def bench_index_kinds(sizes: list[int], dim: int, queries: int = 200) -> list[tuple]:
    from viewfinder.store.vectors import VectorIndex

    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        data = rng.standard_normal((n, dim), dtype=np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        # queries near stored items, as real queries are near their matches
        q = data[rng.choice(n, queries, replace=False)] + 0.7 * rng.standard_normal((queries, dim), dtype=np.float32) / np.sqrt(dim)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        ids = np.arange(n, dtype=np.int64)
        truth = None
        for kind in ("flat", "hnsw"):
            t = time.perf_counter()
            index = VectorIndex(dim, kind)
            for i in range(0, n, 100_000):
                index.add(ids[i : i + 100_000], data[i : i + 100_000])
            build = time.perf_counter() - t
            times, found = [], []
            for row in q:
                t = time.perf_counter()
                _, got = index.search(row[None, :], 10)
                times.append(time.perf_counter() - t)
                found.append(got[0])
            if kind == "flat":
                truth = found
                recall = 1.0
            else:
                recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
            rows.append((f"{n:>9,} x {dim}  {kind:<5}", f"p50 {percentile_ms(times, 50):7.2f} ms  p95 {percentile_ms(times, 95):7.2f} ms",
                         f"recall@10 {recall:.3f}, build {build:.1f} s"))
            del index
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000, help="real images to index (0: skip)")
    ap.add_argument("--model", default="mini")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256, help="mini's embedding size")
    args = ap.parse_args()
    import faiss
    import torch

    rows = []
    if args.images:
        rows += bench_indexing(args.images, args.model, args.workers, args.batch_size)
    if args.sizes:
        rows += bench_index_kinds(args.sizes, args.dim)
    print(f"\nviewfinder engine benchmark: {os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), faiss {faiss.__version__}")
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}} | {'result':<32} | notes")
    print("-" * (width + 60))
    for what, result, notes in rows:
        print(f"{what:<{width}} | {result:<32} | {notes}")


if __name__ == "__main__":
    main()
