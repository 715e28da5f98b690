"""Indexing across the GPUs of one host with `viewfinder index --ray` (Engine.index_distributed):
images/s end to end from JPEG files on disk for 1, 2, 4, ... GPUs, ViT-B/32 and mini, both
RANDOMLY INITIALISED (the real architectures; speed does not depend on weight values, and real
weights cannot travel to the GPU machine; each actor draws its own random weights, so the vectors
mean nothing). One run, one table.

    scripts/device_carry.sh    # here: Ray, faiss, open_clip for the GPU host's Python, in .carry/
    # there: tar -xJf .carry/site12.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:$PWD
    python benchmarks/bench_ray_gpus.py --gpus 1 2 4 8 --images 32000 --vocab .carry/vocab.txt
    python benchmarks/bench_ray_gpus.py --gpus 0 --images 200 --models ViT-B/32   # CPU smoke run

Each GPU count gets a fresh local Ray cluster with that many GPUs and the host's cores in
proportion (host cores / host GPUs per GPU), as a host with that many GPUs has. Rows per model:
the model alone on one GPU (the ceiling), Engine.index without Ray on one GPU (the local CUDA
path, all the host's cores), and index_distributed end to end into a new catalogue: the whole
run (actor start included) and the rate while the actors are up, with efficiency =
rate / (GPUs x the one-GPU rate), and the seconds the driver spent merging chunks into the
catalogue and FAISS index."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import tempfile
import time
from pathlib import Path

from viewfinder import Engine
from viewfinder.config import Config

from common import hard_linked, make_jpegs, print_table, random_mini, random_vit_b_32


class _LastRayLine(logging.Handler):
    """The summary line index_folder_ray logs at the end of a run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.line = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.line = record.getMessage()


def start_cluster(gpus: int, cpus: int) -> None:
    import ray

    ray.shutdown()
    # actors import benchmarks/common.py to build the random models
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
    )
    ray.init(num_gpus=gpus, num_cpus=cpus, include_dashboard=False, log_to_driver=False)


def index_run(folder: Path, build, batch: int, log: _LastRayLine) -> tuple[float, float, float, str]:
    """(whole-run images/s, steady images/s, merge seconds, note) of one index_distributed run."""
    with Engine(
        Config(db=Path(tempfile.mkdtemp(prefix="vf-db-")), model="bench", device="cpu", batch_size=batch),
        encoder=build("cpu"),
    ) as engine:
        rep = engine.index_distributed(folder, encoder_factory=build)
    m = re.search(r"(\d+) files in [\d.]+ s, ([\d.]+) s of it merging; actors busy for ([\d.]+) s", log.line)
    files, merging, busy = int(m[1]), float(m[2]), float(m[3])
    # from the first chunk an actor started to the last one it finished: the actors' start-up
    # (process, imports, model build, CUDA context) left out
    steady = files / busy
    setup = log.line.split("; ")[0]
    note = f"{rep.embedded} embedded in {rep.seconds:.1f} s, actors busy {busy:.1f} s; {setup}"
    return rep.images_per_second, steady, merging, note


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--images", type=int, default=32000)
    ap.add_argument(
        "--repeat", type=int, default=1, help="index this many hard links of each JPEG (a longer run)"
    )
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--models", nargs="*", help="of ViT-B/32 and mini (default both)")
    ap.add_argument("--vocab", type=Path, default=None, help="MiniLM vocab.txt where the package is absent")
    args = ap.parse_args()
    import torch
    from bench_gpu import model_only, viewfinder_index

    host_gpus = torch.cuda.device_count()
    per_gpu = (os.cpu_count() or 2) // max(host_gpus, 1)
    log = _LastRayLine()
    logging.getLogger("viewfinder.ingest.distributed").addHandler(log)
    logging.getLogger("viewfinder.ingest.distributed").setLevel(logging.INFO)
    folder = Path(tempfile.mkdtemp(prefix="vf-jpegs-"))
    t = time.perf_counter()
    make_jpegs(folder, args.images)
    print(f"made {args.images} JPEGs (500x375 and 1024x768) in {time.perf_counter() - t:.0f} s", flush=True)
    if args.repeat > 1:
        folder = hard_linked(folder, args.repeat)
    files = args.images * args.repeat
    device = torch.cuda.get_device_name(0) if host_gpus else "CPU"
    print(f"host: {host_gpus} x {device}, {os.cpu_count()} cores ({per_gpu} per GPU)", flush=True)
    builds = {
        "ViT-B/32": random_vit_b_32,
        "mini": functools.partial(random_mini, vocab=args.vocab),
    }
    rows = []
    for name, build in builds.items():
        if args.models and name not in args.models:
            continue
        if host_gpus:
            enc = build("cuda")
            rows.append(
                (name, "1", "model only (tensors on the GPU)", f"{model_only(enc, 512, 20):,.0f}", "", "")
            )
            local, note = viewfinder_index(enc, folder)
            rows.append((name, "1", "Engine.index, no Ray (the local CUDA path)", f"{local:,.0f}", "", note))
            del enc
            torch.cuda.empty_cache()
        one = None
        for g in args.gpus:
            if g > host_gpus:
                rows.append((name, str(g), "not run: the host has fewer GPUs", "", "", ""))
                continue
            start_cluster(g, per_gpu * max(g, 1))
            whole, steady, merging, note = index_run(folder, build, args.batch, log)
            one = one or (steady if g == 1 else None)
            eff = f"{steady / (g * one):.2f}" if one and g else ""
            rows.append((name, str(g), "index --ray, while the actors are up", f"{steady:,.0f}", eff, note))
            rows.append(
                (
                    name,
                    str(g),
                    "index --ray, whole run",
                    f"{whole:,.0f}",
                    "",
                    f"driver merging {merging:.1f} s",
                )
            )
    print_table(
        f"viewfinder index --ray on one host, {files} JPEG files, random-init models",
        ("model", "GPUs", "what", "images/s", "efficiency", "note"),
        rows,
    )


if __name__ == "__main__":
    main()
