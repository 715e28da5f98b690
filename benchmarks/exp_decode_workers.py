"""Experiment (session 3): decode worker processes, each with its own nvJPEG, against the thread
design in viewfinder/ingest/gpu_decode.py, on the same JPEGs, random-init ViT-B/32 on the GPU.
exp_gpu_workers.py is the reverted worker design (commit 318383a) with one change: the spawned
workers pass shared memory by name, as the main process does.

    python benchmarks/exp_decode_workers.py --images 6000 --repeat 4 --workers 4 8
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import exp_gpu_workers
from bench_gpu import viewfinder_gpu_path
from common import make_jpegs, print_table, random_vit_b_32


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6000)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    args = ap.parse_args()
    files = make_jpegs(Path(tempfile.mkdtemp(prefix="vf-jpegs-")), args.images)
    enc = random_vit_b_32("cuda")
    enc.ensure_loaded()
    rows = []
    rate, note = viewfinder_gpu_path(enc, files, 256, 4, repeat=args.repeat)
    rows.append(("threads: 4 readers, nvJPEG thread, resize thread (the product)", f"{rate:,.0f}", note))
    for w in args.workers:
        rate, note = viewfinder_gpu_path(enc, files, 256, w, repeat=args.repeat, batches=exp_gpu_workers.gpu_batches)
        rows.append((f"{w} decode worker processes, shared memory passed by name", f"{rate:,.0f}", note))
    print_table(f"ViT-B/32 (random init), {len(files) * args.repeat} JPEG decodes, rate after the first batch",
                ("design", "images/s", "notes"), rows)


if __name__ == "__main__":
    main()
