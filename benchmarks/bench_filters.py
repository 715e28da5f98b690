"""Filtered search at 1M vectors: a filter (date, camera, folder, type) picks a share of the
collection in SQLite, and the search ranks only those ids: FAISS with an IDSelector for large
subsets, an exact scan of the subset's vectors for small ones (query/search.py, EXACT_SUBSET).
p50 latency and recall@10 against the exact filtered top 10, at 50%, 1% and 0.01% of the
collection, for the index kind viewfinder picks at this size (HNSW) and for flat.

    python benchmarks/bench_filters.py                  # 2 cores: about 10 min (the HNSW build)
    python benchmarks/bench_filters.py --n 200000 --kinds flat
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_engine import clustered, collection, percentile_ms, real_centres

from viewfinder.query.search import EXACT_SUBSET
from viewfinder.store.vectors import VectorIndex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--kinds", nargs="+", default=["hnsw", "flat"])
    ap.add_argument("--shares", type=float, nargs="+", default=[0.5, 0.01, 0.0001])
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()

    centres, origin = real_centres(args.dim)
    vectors = np.concatenate([v for _, v in collection(centres, args.n)])
    queries = clustered(centres, args.queries, np.random.default_rng(99))
    rng = np.random.default_rng(7)
    subsets = {s: np.sort(rng.choice(args.n, max(1, int(args.n * s)), replace=False)) for s in args.shares}
    truth = {}
    for s, ids in subsets.items():
        scores = queries @ vectors[ids].T
        truth[s] = [set(ids[np.argsort(-row)[:10]].tolist()) for row in scores]
    print(f"{args.n:,} vectors of {args.dim}-d around {origin}; {args.queries} queries", flush=True)
    print("| index | filter keeps | ids kept | how | p50 ms | p95 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        started = time.perf_counter()
        index = VectorIndex.build(collection(centres, args.n), args.dim, kind, expected=args.n)
        print(f"({kind} built in {time.perf_counter() - started:.0f} s)", flush=True)
        for s, ids in subsets.items():
            times, found = [], []
            exact = len(ids) <= EXACT_SUBSET
            for q in queries:
                t = time.perf_counter()
                if exact:  # what query/search.py does: score the subset's vectors directly
                    sub = vectors[ids]
                    top = ids[np.argsort(-(sub @ q))[:10]]
                else:
                    _, got = index.search(q[None, :], 10, allowed=ids)
                    top = got[0]
                times.append(time.perf_counter() - t)
                found.append(set(int(i) for i in top if i >= 0))
            recall = np.mean([len(f & t) / len(t) for f, t in zip(found, truth[s])])
            how = "exact scan of the subset" if exact else "FAISS IDSelector"
            print(
                f"| {kind} | {s:.2%} | {len(ids):,} | {how} | {percentile_ms(times, 50):.1f} | "
                f"{percentile_ms(times, 95):.1f} | {recall:.3f} |",
                flush=True,
            )
        del index


if __name__ == "__main__":
    main()
