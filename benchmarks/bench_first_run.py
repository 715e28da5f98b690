"""`Engine.index` as a one-off `viewfinder index DIR` command runs it: once, in a fresh process, so
that it makes its GPU JPEG decoder new (a process that indexes again reuses it:
gpu_jpeg.reused_decoder). Earlier commits' GPU paths alternate with this tree's, each run in a
process of its own, on N phone-size JPEGs (4032x3024) linked REP times, ROUNDS rounds (default 3);
each process then indexes the folder again, into another new catalogue. The model is a
random-init ViT-B/32, built before the runs are timed; its first forward pass in a fresh process is
timed apart.

    git show COMMIT:viewfinder/ingest/gpu_decode.py > viewfinder/ingest/_old_gpu_decode.py
    EARLIER=_old_gpu_decode N=400 REP=10 python benchmarks/bench_first_run.py     # needs a CUDA GPU"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import earlier_gpu_batches, hard_linked, make_jpegs, print_table, random_vit_b_32


def one_run(module: str, folder: Path) -> dict:
    """Index `folder` into a new catalogue with ingest module `module`'s gpu_batches, twice: as a
    fresh process does, then as a process that has indexed before does."""
    from viewfinder import Config, Engine
    from viewfinder.ingest import gpu_decode

    gpu_decode.gpu_batches = earlier_gpu_batches(module)
    enc = random_vit_b_32(os.environ.get("DEV", "cuda"))
    reports = []
    for _ in range(2):
        config = Config(db=Path(tempfile.mkdtemp(prefix="vf-db-")), model="bench", device=enc.device)
        with Engine(config, encoder=enc) as engine:
            reports.append(engine.index(folder, progress=False))
    return {"rates": [r.images_per_second for r in reports], "seconds": [r.seconds for r in reports]}


def first_forward() -> dict:
    """Seconds of the model's first two forward passes (a batch of one) in a fresh process."""
    import time

    import torch

    enc = random_vit_b_32(os.environ.get("DEV", "cuda"))
    pixels = torch.zeros((1, 3, 224, 224), device=enc.device)
    times = []
    for _ in range(2):
        t = time.perf_counter()
        enc.encode_image_tensors(pixels)
        times.append(time.perf_counter() - t)
    return {"seconds": times}


def in_fresh_process(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    n, rep = int(os.environ.get("N", 400)), int(os.environ.get("REP", 10))
    folder = Path(tempfile.mkdtemp())
    make_jpegs(folder, n, [(4032, 3024)])
    linked = hard_linked(folder, rep)
    modules = [*filter(None, os.environ.get("EARLIER", "").split(",")), "gpu_decode"]
    forward = in_fresh_process("--forward")["seconds"]
    rows = [
        (
            "the model's first forward pass in a fresh process (batch 1)",
            "",
            f"{forward[0]:.2f} s, then {forward[1]:.3f} s",
        )
    ]
    for _ in range(int(os.environ.get("ROUNDS", 3))):
        for module in modules:
            got = in_fresh_process(module, str(linked))
            name = "this tree" if module == "gpu_decode" else module
            (fresh, again), (s1, s2) = got["rates"], got["seconds"]
            rows.append(
                (
                    f"Engine.index, fresh process, {name}",
                    f"{fresh:,.0f}",
                    f"{s1:.2f} s; again in that process: {again:,.0f}/s, {s2:.2f} s",
                )
            )
            print(*rows[-1], sep=" | ", flush=True)
    print_table(f"{n} JPEGs of 4032x3024 x {rep}, one run a process", ("what", "images/s", ""), rows)


if __name__ == "__main__":
    if sys.argv[1:] == ["--forward"]:
        print(json.dumps(first_forward()))
    elif len(sys.argv) == 3:
        print(json.dumps(one_run(sys.argv[1], Path(sys.argv[2]))))
    else:
        main()
