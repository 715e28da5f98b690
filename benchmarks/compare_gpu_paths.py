"""The GPU indexing path of earlier commits against this tree's, on one host in one process,
alternating, on phone-size JPEGs: the decode limit of the host (bench_gpu.stage_rates), the CUDA
path without the catalogue (bench_gpu.viewfinder_gpu_path), then `Engine.index`, ROUNDS times each
(default 2). Lent GPU hosts differ by 10-30% in these rates, so a change is judged only against the
earlier path measured in the same run. Needs the earlier modules beside the new one, named in
EARLIER (default _old_gpu_decode):

    git show COMMIT:viewfinder/ingest/gpu_decode.py > viewfinder/ingest/_old_gpu_decode.py
    N=400 REP=20 python benchmarks/compare_gpu_paths.py

N JPEGs of 4032x3024 are made, each gone over REP times (Engine.index: REP hard links)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench_gpu import stage_rates, viewfinder_gpu_path, viewfinder_index

from common import make_jpegs, print_table, random_vit_b_32

READERS = 14  # gpu_decode.gpu_readers on a 16-core host


def main() -> None:
    import importlib

    from viewfinder.ingest import gpu_decode

    n, rep = int(os.environ.get("N", 400)), int(os.environ.get("REP", 20))
    device = os.environ.get("DEV", "cuda")
    folder = Path(tempfile.mkdtemp())
    make_jpegs(folder, n, [(4032, 3024)])
    files = sorted(folder.iterdir())
    enc = random_vit_b_32(device)
    shown = ("stage: read + header check + BLAKE3", "stage: nvJPEG", "decode limit")
    rows = [row for row in stage_rates(enc, files, 256) if row[0].startswith(shown)]
    paths = {
        name: importlib.import_module(f"viewfinder.ingest.{name}").gpu_batches
        for name in os.environ.get("EARLIER", "_old_gpu_decode").split(",")
    }
    paths["this tree"] = gpu_decode.gpu_batches
    rounds = int(os.environ.get("ROUNDS", 2))
    for name in list(paths) * rounds:
        rate, note = viewfinder_gpu_path(enc, files, 256, READERS, repeat=rep, batches=paths[name])
        rows.append((f"CUDA path, {name}, after the first batch", f"{rate:,.0f}", note))
    for name, fn in list(paths.items()) * rounds:
        gpu_decode.gpu_batches = fn  # what ingest.pipeline calls when it indexes
        rate, note = viewfinder_index(enc, folder, copies=rep)
        rows.append((f"Engine.index, {name}", f"{rate:,.0f}", note))
    gpu_decode.gpu_batches = paths["this tree"]
    print_table(
        f"{n} JPEGs of 4032x3024 x {rep}, {READERS} readers, random-init ViT-B/32 on {device}",
        ("what", "images/s", ""),
        rows,
    )


if __name__ == "__main__":
    main()
