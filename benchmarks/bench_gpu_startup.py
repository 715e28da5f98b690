"""Where the GPU path's start goes with phone photos: starting 14 reader processes (a trivial
DataLoader, before and after the model is on the GPU), and the first batch of gpu_batches over
448 12 MP JPEGs with the readers' Pillow share at its default and at 0, three times each,
alternating. Until 9d7228b each reader's first batch carried its share of draft decodes, so share 0
started sooner (gpu_12mp_h100_startup.txt); since then the first batches carry none either way.

    python benchmarks/bench_gpu_startup.py            # needs a CUDA GPU"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.utils.data as tud

from common import file_stats, file_tensor, make_jpegs, random_vit_b_32


class _Numbers(tud.Dataset):
    def __len__(self) -> int:
        return 10_000

    def __getitem__(self, i: int) -> int:
        return i


def _resident_gb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 1e9


def _start_readers(n: int = 14) -> tuple[float, float]:
    """(seconds to start n worker processes, seconds to their first item)."""
    t = time.perf_counter()
    it = iter(tud.DataLoader(_Numbers(), batch_size=None, num_workers=n, prefetch_factor=2))
    started = time.perf_counter() - t
    next(it)
    return round(started, 3), round(time.perf_counter() - t, 3)


def main() -> None:
    from torchvision.io import decode_jpeg

    from viewfinder.ingest.gpu_decode import gpu_batches

    folder = Path(tempfile.mkdtemp(prefix="vf-start-"))
    files = make_jpegs(folder, 448, [(4032, 3024)])
    starts = f"{_start_readers()}, {_start_readers()}"
    print(f"resident {_resident_gb():.2f} GB; readers started, first item (s): {starts}")
    enc = random_vit_b_32("cuda")
    enc.encode_image_tensors(torch.randn(32, 3, 224, 224, device="cuda"))
    decode_jpeg([file_tensor(files[0])], device="cuda")
    torch.cuda.synchronize()
    print(
        f"with the model on the GPU, resident {_resident_gb():.2f} GB; readers started, first item (s): "
        f"{_start_readers()}, {_start_readers()}, {_start_readers()}"
    )
    transform, mean, std = enc.uint8_transform()
    stats = file_stats(files)
    for share in [None, 0.0] * 3:
        clock: dict[str, float] = {}
        t, n = time.perf_counter(), 0
        for k, (pixels, records) in enumerate(
            gpu_batches(
                stats,
                batch_size=256,
                device="cuda",
                side=224,
                mean=mean,
                std=std,
                max_pixels=10**9,
                fallback=transform,
                workers=14,
                timings=clock,
                cpu_share=share,
            )
        ):
            if k == 0:
                enc.encode_image_tensors(pixels)
                torch.cuda.synchronize()
                first = time.perf_counter() - t
            n += len(records)
        torch.cuda.synchronize()
        split = ", ".join(f"{k} {v:.2f} s" for k, v in clock.items())
        print(
            f"Pillow share {'default' if share is None else share}: first batch after {first:.2f} s, "
            f"{n} files in {time.perf_counter() - t:.2f} s ({split})"
        )


if __name__ == "__main__":
    main()
