"""Experiment (session 3): decode worker processes, each with its own nvJPEG, against the thread
design in viewfinder/ingest/gpu_decode.py, on the same JPEGs, random-init ViT-B/32 on the GPU.
exp_gpu_workers.py is the reverted worker design (commit 318383a) with one change: the spawned
workers pass shared memory by name, as the main process does.

    python benchmarks/exp_decode_workers.py --images 6000 --repeat 4 --workers 4 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import exp_gpu_workers
from bench_gpu import _side
from common import GpuUtilisation, make_jpegs, print_table, random_vit_b_32, synchronize
from viewfinder.ingest import gpu_decode
from viewfinder.ingest.walk import FileStat


def run(batches_fn, enc, stats, workers: int) -> tuple[float, str]:
    transform, mean, std = enc.uint8_transform()
    n, clock = 0, {}
    with GpuUtilisation() as util:
        t = time.perf_counter()
        for pixels, _ in batches_fn(stats, 256, enc.device, _side(enc), mean, std, 10**9, transform, workers, timings=clock):
            enc.encode_image_tensors(pixels)
            if not n:
                synchronize(enc.device)
                first, first_n = time.perf_counter() - t, len(pixels)
            n += len(pixels)
        synchronize(enc.device)
        elapsed = time.perf_counter() - t
    split = ", ".join(f"{k} {v / elapsed:.0%}" for k, v in clock.items())
    return (n - first_n) / (elapsed - first), f"{util.mean}; whole run {n / elapsed:,.0f}/s, first batch after {first:.1f} s; {split}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6000)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    args = ap.parse_args()
    files = make_jpegs(Path(tempfile.mkdtemp(prefix="vf-jpegs-")), args.images)
    stats = [FileStat(str(f), f.stat().st_size, f.stat().st_mtime) for f in files] * args.repeat
    enc = random_vit_b_32("cuda")
    enc.ensure_loaded()
    rows = []
    rate, note = run(gpu_decode.gpu_batches, enc, stats, 4)
    rows.append(("threads: 4 readers, nvJPEG thread, resize thread (the product)", f"{rate:,.0f}", note))
    for w in args.workers:
        rate, note = run(exp_gpu_workers.gpu_batches, enc, stats, w)
        rows.append((f"{w} decode worker processes, shared memory passed by name", f"{rate:,.0f}", note))
    print_table(f"ViT-B/32 (random init), {len(stats)} JPEG decodes, rate after the first batch",
                ("design", "images/s", "notes"), rows)


if __name__ == "__main__":
    main()
