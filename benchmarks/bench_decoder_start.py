"""What a run pays to get its GPU JPEG decoder ready: nvImageCodec's hardware decoder made new,
with one of several warm-up calls first, or through gpu_jpeg.reused_decoder (a new one warmed up on
the first photo 28 times, as gpu_batches warms one up on a batch of phone photos while the readers
start; later runs take it warm); then its first three calls on one reader batch of phone photos
(28 different JPEGs of 4032x3024).

    python benchmarks/bench_decoder_start.py"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

from common import file_tensor, make_jpegs


def tiny_jpeg():
    """A 64x64 JPEG as a uint8 tensor."""
    import torch
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(out, "JPEG")
    return torch.frombuffer(bytearray(out.getvalue()), dtype=torch.uint8)


def seconds(fn, *args) -> tuple[float, object]:
    """(seconds for `fn(*args)` and the GPU work it queued, what it returned)."""
    import torch

    t = time.perf_counter()
    out = fn(*args)
    torch.cuda.synchronize()
    return time.perf_counter() - t, out


def report(how: str, got: float, decoder, datas: list) -> None:
    calls = ", ".join(f"{seconds(decoder, datas)[0] * 1000:.0f} ms" for _ in range(3))
    print(f"{how:58s} ready in {got * 1000:7.1f} ms; calls of 28: {calls}", flush=True)


def main() -> None:
    import torch

    from viewfinder.ingest.gpu_decode import side_stream
    from viewfinder.ingest.gpu_jpeg import jpeg_decoder, reused_decoder

    files = sorted(make_jpegs(Path(tempfile.mkdtemp()), 28, [(4032, 3024)]))
    datas = [file_tensor(f) for f in files]
    tiny = tiny_jpeg()
    warm_ups = [  # the first decoder made in the process pays more: none, twice
        ("none", []),
        ("none", []),
        ("one 64x64 JPEG", [tiny]),
        ("28 x one 64x64 JPEG", [tiny] * 28),
        ("one photo", datas[:1]),
        ("28 x one photo", datas[:1] * 28),
    ]
    torch.zeros(1, device="cuda")  # the CUDA context, before any timing
    with torch.cuda.stream(side_stream("cuda")):
        for name, warm in warm_ups:
            t, decoder = seconds(jpeg_decoder, "nvimgcodec-hw", "cuda")
            w = seconds(decoder, warm)[0] if warm else 0.0
            report(f"new, made in {t * 1000:.0f} ms + warm-up: {name}", t + w, decoder, datas)
        for k in range(3):
            t = time.perf_counter()
            with reused_decoder("nvimgcodec-hw", "cuda", lambda: datas[:1] * 28) as decoder:
                torch.cuda.synchronize()
                got = time.perf_counter() - t
                how = "reused_decoder: " + (
                    "new, warmed up (28 x one photo)" if k == 0 else "kept from the last run"
                )
                report(how, got, decoder, datas)


if __name__ == "__main__":
    main()
