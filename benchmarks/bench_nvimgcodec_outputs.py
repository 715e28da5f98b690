"""Where nvImageCodec's decoded pixels go, timed on phone photos (decode alone, bytes in ordinary
memory, calls of one reader batch and of 256), the ways alternating, two rounds each:

- interleaved: (H,W,3) in nvImageCodec's own buffers, permuted and copied to torch (before
  2026-11-27);
- planar: (3,H,W) in nvImageCodec's buffers, copied to torch; planar_no_clone: not copied (not
  safe in the pipeline: the buffers go when the Image objects do);
- reused: planar into the Images of the call before, copied to torch;
- into_torch: planar straight into tensors from torch's allocator (shipped, gpu_jpeg.py).

Every way is first checked to give the same pixels as the first.

    python benchmarks/bench_nvimgcodec_outputs.py        # N=448 JPEGs of 4032x3024"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from common import file_tensor, make_jpegs


def main() -> None:
    import torch
    from nvidia import nvimgcodec

    from viewfinder.ingest.gpu_jpeg import jpeg_decoder

    dev, n = "cuda", int(os.environ.get("N", 448))
    folder = Path(tempfile.mkdtemp())
    files = sorted(make_jpegs(folder, 64, [(4032, 3024)]))
    datas = [file_tensor(f) for f in files]
    datas = (datas * (n // len(datas) + 1))[:n]
    stream = torch.cuda.Stream(dev, priority=-1)
    hw = (nvimgcodec.BackendKind.HW_GPU_ONLY, nvimgcodec.BackendKind.GPU_ONLY)
    dec = nvimgcodec.Decoder(device_id=0, max_num_cpu_threads=0, backends=[nvimgcodec.Backend(k) for k in hw])

    def params(fmt):
        return nvimgcodec.DecodeParams(
            apply_exif_orientation=False, color_spec=nvimgcodec.ColorSpec.SRGB, sample_format=fmt
        )

    interleaved_params, planar_params = (
        params(nvimgcodec.SampleFormat.I_RGB),
        params(nvimgcodec.SampleFormat.P_RGB),
    )
    pool: list = []

    def code_streams(jpegs):
        return [nvimgcodec.CodeStream(j.numpy()) for j in jpegs]

    def decoded(jpegs, p, **kw):
        return dec.decode(code_streams(jpegs), params=p, cuda_stream=stream.cuda_stream, **kw)

    def interleaved(jpegs):
        return [
            torch.as_tensor(im, device=dev).permute(2, 0, 1).clone()
            for im in decoded(jpegs, interleaved_params)
        ]

    def planar(jpegs):
        return [torch.as_tensor(im, device=dev).clone() for im in decoded(jpegs, planar_params)]

    def planar_no_clone(jpegs):
        return [torch.as_tensor(im, device=dev) for im in decoded(jpegs, planar_params)]

    def reused(jpegs):
        nonlocal pool
        if len(pool) < len(jpegs):
            pool = pool + decoded(jpegs[len(pool) :], planar_params)
        return [
            torch.as_tensor(im, device=dev).clone()
            for im in decoded(jpegs, planar_params, images=pool[: len(jpegs)])
        ]

    shipped = jpeg_decoder("nvimgcodec-hw", dev)  # on the current stream: `stream` below

    def into_torch(jpegs):
        return shipped(jpegs)

    ways = {f.__name__: f for f in (interleaved, planar, planar_no_clone, reused, into_torch)}
    with torch.cuda.stream(stream):
        ref = interleaved(datas[:4])
        for name, fn in list(ways.items()):
            try:
                out = fn(datas[:4])
                torch.cuda.synchronize()
                same = all(torch.equal(a, b) for a, b in zip(ref, out))
                print(f"{name}: equal to interleaved: {same}; shape {tuple(out[0].shape)}", flush=True)
            except Exception as exc:  # noqa: BLE001  (a way this nvImageCodec does not take)
                print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
                del ways[name]
        print(f"{n} JPEGs 4032x3024, images/s (bytes in ordinary memory), alternating", flush=True)
        for call in (28, 256):
            for rep in range(2):
                for name, fn in ways.items():
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    for i in range(0, n, call):
                        fn(datas[i : i + call])
                    torch.cuda.synchronize()
                    rate = n / (time.perf_counter() - t)
                    held = torch.cuda.memory_reserved() / 2**30
                    print(
                        f"calls of {call:3d} rep {rep} {name:16s} {rate:7.1f} (torch reserved {held:.1f} GiB)"
                    )


if __name__ == "__main__":
    main()
