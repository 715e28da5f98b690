"""GPU memory across CUDA path runs in one process, as in a server that indexes again and again
(or a benchmark that compares paths): free device memory, what PyTorch holds, and the decoder
objects still alive after each run, before and after a garbage collection. A decoder whose
memory outlives its run shows as free memory falling run after run. Since 2026-11-27 each run's
decoders are kept for the next (gpu_jpeg.reused_decoder): their count stays at one run's.

    DECODERS=nvimgcodec-hw RUNS=6 N=200 REP=20 python benchmarks/gpu_memory_runs.py

N JPEGs of 4032x3024, each gone over REP times a run."""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path

from bench_gpu import viewfinder_gpu_path

from common import make_jpegs, print_table, random_vit_b_32


def _alive(kind: str) -> int:
    return sum(1 for o in gc.get_objects() if type(o).__name__ == kind)


def main() -> None:
    import torch

    n, rep, runs = (int(os.environ.get(k, d)) for k, d in (("N", 200), ("REP", 20), ("RUNS", 6)))
    decoders = tuple(os.environ.get("DECODERS", "nvimgcodec-hw").split("+"))
    folder = Path(tempfile.mkdtemp())
    files = make_jpegs(folder, n, [(4032, 3024)])
    enc = random_vit_b_32("cuda")
    rows = []
    for run in range(1, runs + 1):
        rate, _ = viewfinder_gpu_path(enc, sorted(files), 256, 14, repeat=rep, decoders=decoders)
        torch.cuda.synchronize()
        for when in ("after the run", "after gc.collect()"):
            if when != "after the run":
                gc.collect()
                torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info()
            rows.append(
                (
                    run,
                    when,
                    f"{rate:,.0f}",
                    f"{free / 2**30:,.1f} of {total / 2**30:,.0f}",
                    f"{torch.cuda.memory_reserved() / 2**30:,.1f}",
                    _alive("JpegDecoder"),
                )
            )
    print_table(
        f"{n} JPEGs of 4032x3024 x {rep} a run, decoders {'+'.join(decoders)}, random-init ViT-B/32",
        ("run", "when", "images/s", "free GiB", "PyTorch reserved GiB", "JpegDecoder objects alive"),
        rows,
    )


if __name__ == "__main__":
    main()
