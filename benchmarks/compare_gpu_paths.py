"""The GPU indexing path of earlier commits, or of this tree with other settings, against this
tree's, on one host in one process, alternating, on phone-size JPEGs: the decode limit of the
host (bench_gpu.stage_rates), the CUDA path without the catalogue (bench_gpu.viewfinder_gpu_path),
then `Engine.index`, ROUNDS times each (default 2). Lent GPU hosts differ by 10-30% in these rates,
so a change is judged only against the other paths measured in the same run.

EARLIER names earlier modules put beside the new one (comma-separated; they get the decoders this
tree picks, and 14 readers unless the name is followed by '/' and a count):

    git show COMMIT:viewfinder/ingest/gpu_decode.py > viewfinder/ingest/_old_gpu_decode.py
    EARLIER=_old_gpu_decode N=400 REP=20 python benchmarks/compare_gpu_paths.py

VARIANTS names settings for this tree's path (semicolon-separated), each GPU decoders joined by
'+' (gpu_decoders), optionally followed by '/' and a Pillow share (gpu_pillow_share), by '/'
and a count of reader processes (instead of gpu_decode.gpu_readers' choice), and by '/' and a
count of draft processes (gpu_batches' `drafters`, instead of gpu_decode.gpu_drafters' choice):

    VARIANTS="torchvision;nvimgcodec-hw/0.15;nvimgcodec-hw/0/6;nvimgcodec-hw//7/7" N=400 REP=20 \
        python benchmarks/compare_gpu_paths.py

N JPEGs of 4032x3024 are made, each gone over REP times (Engine.index: REP hard links); LIMIT=0
leaves out the decode limit."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench_gpu import stage_rates, viewfinder_gpu_path, viewfinder_index

from common import earlier_gpu_batches, make_jpegs, print_table, random_vit_b_32

READERS = 14  # gpu_decode.gpu_readers of earlier commits on a 16-core host, for EARLIER's paths


def paths_to_compare() -> dict[str, tuple]:
    """label -> (gpu_batches function, decoders, Pillow share, readers, draft processes):
    EARLIER's, VARIANTS', this tree's (None: this tree's choice)."""
    from viewfinder.ingest import gpu_decode

    paths = {}
    for earlier in filter(None, os.environ.get("EARLIER", "").split(",")):
        name, _, readers = earlier.partition("/")
        paths[earlier] = (earlier_gpu_batches(name), (), None, int(readers or READERS), None)
    for variant in filter(None, os.environ.get("VARIANTS", "").split(";")):
        decoders, share, readers, drafters = (variant.split("/") + ["", "", ""])[:4]
        paths[f"this tree, {variant}"] = (
            gpu_decode.gpu_batches,
            tuple(decoders.split("+")),
            float(share) if share else None,
            int(readers) if readers else None,
            int(drafters) if drafters else None,
        )
    paths["this tree"] = (gpu_decode.gpu_batches, (), None, None, None)
    return paths


def main() -> None:
    from viewfinder.ingest import gpu_decode

    n, rep = int(os.environ.get("N", 400)), int(os.environ.get("REP", 20))
    device = os.environ.get("DEV", "cuda")
    folder = Path(tempfile.mkdtemp())
    make_jpegs(folder, n, [(4032, 3024)])
    files = sorted(folder.iterdir())
    enc = random_vit_b_32(device)
    shown = ("stage: read + header check + BLAKE3", "stage: nvJPEG", "stage: fastest GPU", "decode limit")
    # LIMIT=0: the paths alone, without the decode limit (a minute and a half less)
    limit = os.environ.get("LIMIT", "1") != "0"
    rows = [row for row in stage_rates(enc, files, 256) if row[0].startswith(shown)] if limit else []
    print(*rows, sep="\n", flush=True)
    paths = paths_to_compare()
    rounds = int(os.environ.get("ROUNDS", 2))
    for name in list(paths) * rounds:
        fn, decoders, share, readers, drafters = paths[name]
        rate, note = viewfinder_gpu_path(
            enc,
            files,
            256,
            readers,
            repeat=rep,
            batches=fn,
            decoders=decoders,
            cpu_share=share,
            drafters=drafters,
        )
        rows.append((f"CUDA path, {name}, after the first batch", f"{rate:,.0f}", note))
        print(*rows[-1], sep=" | ", flush=True)  # so that a run cut short still shows its rows
    shipped = gpu_decode.gpu_batches, gpu_decode.gpu_readers
    for name in list(paths) * rounds:
        fn, decoders, share, readers, drafters = paths[name]
        # what ingest.pipeline calls when it indexes
        gpu_decode.gpu_batches = fn
        gpu_decode.gpu_readers = (lambda *_, n=readers: n) if readers else shipped[1]
        rate, note = viewfinder_index(
            enc, folder, decoders, copies=rep, pillow_share=share, drafters=drafters
        )
        rows.append((f"Engine.index, {name}", f"{rate:,.0f}", note))
        print(*rows[-1], sep=" | ", flush=True)
    gpu_decode.gpu_batches, gpu_decode.gpu_readers = shipped
    print_table(
        f"{n} JPEGs of 4032x3024 x {rep}, random-init ViT-B/32 on {device}",
        ("what", "images/s", ""),
        rows,
    )


if __name__ == "__main__":
    main()
