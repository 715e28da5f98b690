"""Experiment (session 3): JPEG decoders side by side in ONE process, each in a thread of its own
with its own decoder: torchvision's nvJPEG ("tv", one decode per process at a time) and NVIDIA
nvImageCodec ("nvi:N", N = its CPU threads, 0 = its default). Can two decoders in one process
(one CUDA context, so no time-slicing between processes) decode more than one?

    python benchmarks/exp_decoders.py --images 6000 tv nvi:0 nvi:2 nvi:2+nvi:2 tv+nvi:0 tv+nvi:2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import make_jpegs, print_table


def _decoder(kind: str):
    """A function: list of JPEG byte arrays -> list of uint8 (C,H,W) CUDA tensors."""
    import torch

    if kind == "tv":
        from torchvision.io import ImageReadMode, decode_jpeg

        return lambda arrays: decode_jpeg([torch.from_numpy(a) for a in arrays], mode=ImageReadMode.RGB, device="cuda")
    from nvidia import nvimgcodec

    dec = nvimgcodec.Decoder(device_id=0, max_num_cpu_threads=int(kind.split(":")[1]))
    params = nvimgcodec.DecodeParams(apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.SRGB,
                                     sample_format=nvimgcodec.SampleFormat.I_RGB)

    def decode(arrays):
        images = dec.decode([nvimgcodec.CodeStream(a) for a in arrays], params=params)
        return [torch.as_tensor(im, device="cuda").permute(2, 0, 1) for im in images if im is not None]

    return decode


def rate(kinds: list[str], data: list[np.ndarray], batch: int) -> float:
    """Images/s of all the decoders together, the batches dealt out in turn."""
    import torch

    decoders = [_decoder(k) for k in kinds]
    chunks = [data[i : i + batch] for i in range(0, len(data), batch)]
    for d in decoders:
        d(chunks[0])  # start-up
    torch.cuda.synchronize()

    def run(k: int) -> int:
        return sum(len(decoders[k](c)) for c in chunks[k :: len(decoders)])

    t = time.perf_counter()
    with ThreadPoolExecutor(len(decoders)) as pool:
        n = sum(pool.map(run, range(len(decoders))))
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("mixes", nargs="+", help="decoders joined by +, e.g. tv+nvi:2")
    args = ap.parse_args()
    files = make_jpegs(Path(tempfile.mkdtemp(prefix="vf-jpegs-")), args.images)
    data = [np.fromfile(f, dtype=np.uint8) for f in files]
    rows = []
    for mix in args.mixes:
        try:
            rows.append((mix, f"{rate(mix.split('+'), data, args.batch):,.0f}"))
        except Exception as exc:  # noqa: BLE001  (report, do not abort the table)
            rows.append((mix, f"failed: {type(exc).__name__}: {exc}"[:100]))
        print(rows[-1], flush=True)
    print_table(f"{len(files)} JPEGs (500x375 and 1024x768), batch {args.batch}, decoders in one process",
                ("decoders (one thread each)", "images/s"), rows)


if __name__ == "__main__":
    main()
