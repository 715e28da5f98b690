"""What a run pays to get its GPU JPEG decoder: nvImageCodec's hardware decoder made new (as every
index run did before 2026-11-27) or taken from an earlier run of the process
(gpu_jpeg.reused_decoder), and its first three calls on one reader batch of phone photos (28
JPEGs of 4032x3024).

    python benchmarks/bench_decoder_start.py"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from common import file_tensor, make_jpegs


def main() -> None:
    import torch

    from viewfinder.ingest.gpu_decode import side_stream
    from viewfinder.ingest.gpu_jpeg import jpeg_decoder, reused_decoder

    files = sorted(make_jpegs(Path(tempfile.mkdtemp()), 28, [(4032, 3024)]))
    datas = [file_tensor(f) for f in files]
    torch.zeros(1, device="cuda")  # the CUDA context, before any timing
    for how in ("new", "new", "reused", "reused", "reused"):
        with torch.cuda.stream(side_stream("cuda")):
            t = time.perf_counter()
            with (
                reused_decoder("nvimgcodec-hw", "cuda")
                if how == "reused"
                else contextlib.nullcontext(jpeg_decoder("nvimgcodec-hw", "cuda"))
            ) as dec:
                got = time.perf_counter() - t
                calls = []
                for _ in range(3):
                    t = time.perf_counter()
                    dec(datas)
                    torch.cuda.synchronize()
                    calls.append(time.perf_counter() - t)
        shown = ", ".join(f"{c * 1000:.0f} ms" for c in calls)
        print(f"nvimgcodec-hw {how:7s} got in {got * 1000:6.1f} ms; calls of 28: {shown}", flush=True)


if __name__ == "__main__":
    main()
