"""The GPU path as shipped before this commit against nvJPEG's large JPEGs read by threads of
the main process (this commit's gpu_decode.py), on one host in one process, alternating: the
CUDA path (bench_gpu.viewfinder_gpu_path) for each reader-thread variant, then Engine.index for
both. Needs the earlier module beside the new one:

    git show 5f7aa47:viewfinder/ingest/gpu_decode.py > viewfinder/ingest/_old_gpu_decode.py
    N=400 REP=20 python benchmarks/compare_reader_threads.py

N phone-size JPEGs are made, each gone over REP times (Engine.index: REP hard links)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench_gpu import viewfinder_gpu_path, viewfinder_index

from common import make_jpegs, random_vit_b_32


def main() -> None:
    from viewfinder.ingest import _old_gpu_decode as old
    from viewfinder.ingest import gpu_decode

    n, rep = int(os.environ.get("N", 400)), int(os.environ.get("REP", 15))
    device = os.environ.get("DEV", "cuda")
    folder = Path(tempfile.mkdtemp())
    make_jpegs(folder, n, [(4032, 3024)])
    files = sorted(folder.iterdir())
    enc = random_vit_b_32(device)
    new_batches, new_threads = gpu_decode.gpu_batches, gpu_decode.thread_batches

    def variant(threads: int, memory: str) -> None:
        memory = memory if device == "cuda" else "ordinary"  # page-locked memory needs CUDA
        gpu_decode.thread_batches = lambda *a, **k: new_threads(
            *a, **{**k, "threads": threads, "memory": memory}
        )

    runs = [
        ("shipped", None),
        ("threads 4 pinned", (4, "pinned")),
        ("threads 4 ordinary", (4, "ordinary")),
        ("threads 2 ordinary", (2, "ordinary")),
        ("shipped again", None),
        ("threads 4 pinned again", (4, "pinned")),
    ]
    for name, threads in runs:
        if threads:
            variant(*threads)
        rate, note = viewfinder_gpu_path(
            enc, files, 256, 14, repeat=rep, batches=None if threads else old.gpu_batches
        )
        print(f"CUDA path, {name}: {rate:.0f}/s after the first batch; {note}", flush=True)
    for name, fn in [("shipped", old.gpu_batches), ("threads 4 pinned (new default)", new_batches)]:
        variant(4, "pinned")
        gpu_decode.gpu_batches = fn  # what ingest.pipeline imports when it indexes
        rate, note = viewfinder_index(enc, folder, copies=rep)
        print(f"Engine.index, {name}: {rate:.0f}/s; {note}", flush=True)
        gpu_decode.gpu_batches = new_batches


if __name__ == "__main__":
    main()
