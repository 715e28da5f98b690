"""`Engine.index` as a one-off `viewfinder index DIR` command runs it: once, in a fresh process, so
that it makes its GPU JPEG decoder new (a process that indexes again reuses it:
gpu_jpeg.reused_decoder). Earlier commits' GPU paths alternate with this tree's, each run in a
process of its own, on N phone-size JPEGs (4032x3024) linked REP times, ROUNDS rounds (default 3).
The model is a random-init ViT-B/32, built before the run is timed.

    git show COMMIT:viewfinder/ingest/gpu_decode.py > viewfinder/ingest/_old_gpu_decode.py
    EARLIER=_old_gpu_decode N=400 REP=10 python benchmarks/bench_first_run.py     # needs a CUDA GPU"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import hard_linked, make_jpegs, print_table, random_vit_b_32


def one_run(module: str, folder: Path) -> dict:
    """Index `folder` once into a new catalogue with ingest module `module`'s gpu_batches."""
    from viewfinder import Config, Engine
    from viewfinder.ingest import gpu_decode

    gpu_decode.gpu_batches = importlib.import_module(f"viewfinder.ingest.{module}").gpu_batches
    enc = random_vit_b_32(os.environ.get("DEV", "cuda"))
    config = Config(db=Path(tempfile.mkdtemp(prefix="vf-db-")), model="bench", device=enc.device)
    with Engine(config, encoder=enc) as engine:
        report = engine.index(folder, progress=False)
    return {"rate": report.images_per_second, "seconds": report.seconds, "embedded": report.embedded}


def main() -> None:
    n, rep = int(os.environ.get("N", 400)), int(os.environ.get("REP", 10))
    folder = Path(tempfile.mkdtemp())
    make_jpegs(folder, n, [(4032, 3024)])
    linked = hard_linked(folder, rep)
    modules = [*filter(None, os.environ.get("EARLIER", "").split(",")), "gpu_decode"]
    rows = []
    for _ in range(int(os.environ.get("ROUNDS", 3))):
        for module in modules:
            out = subprocess.run(
                [sys.executable, __file__, module, str(linked)], check=True, capture_output=True, text=True
            ).stdout
            got = json.loads(out.strip().splitlines()[-1])
            name = "this tree" if module == "gpu_decode" else module
            note = f"{got['embedded']} embedded in {got['seconds']:.2f} s"
            rows.append((f"Engine.index, fresh process, {name}", f"{got['rate']:,.0f}", note))
            print(*rows[-1], sep=" | ", flush=True)
    print_table(f"{n} JPEGs of 4032x3024 x {rep}, one run a process", ("what", "images/s", ""), rows)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(json.dumps(one_run(sys.argv[1], Path(sys.argv[2]))))
    else:
        main()
