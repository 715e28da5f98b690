"""Captioning throughput: the offline vocabulary captioner on CPU (with the real mini where it is
installed), and GIT-base (RANDOMLY INITIALISED: the real architecture; greedy decoding of 20
tokens, which a random model always runs to the end) on the GPU, at batch sizes 1, 8 and 32.

    python benchmarks/bench_caption.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import print_table, random_mini, synchronize


def images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)) for _ in range(n)]


def rate(fn, batch: int, repeats: int, device: str) -> float:
    fn(batch)
    synchronize(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn(batch)
    synchronize(device)
    return batch * repeats / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-cpu-git", action="store_true")
    ap.add_argument(
        "--vocab", type=Path, default=None, help="MiniLM vocab.txt where the package is not installed"
    )
    args = ap.parse_args()
    import torch

    from viewfinder.models import load_encoder
    from viewfinder.models.captioner import load_captioner

    rows = []
    try:
        enc, label = load_encoder("mini", device="cpu"), "vocab captioner + mini"
        enc.ensure_loaded()
    except Exception:  # noqa: BLE001
        enc, label = random_mini("cpu", args.vocab), "vocab captioner + mini (random init)"
    cap = load_captioner("vocab", enc)
    cap._prepare()  # vocabulary embeddings: once per model, outside the timing
    pool = images(32)
    for b in (1, 8, 32):
        rows.append(
            ("cpu", label, b, f"{rate(lambda n: cap.caption(pool[:n]), b, max(1, 32 // b), 'cpu'):.1f}")
        )
    vecs = enc.encode_images(pool)
    rows.append(
        (
            "cpu",
            "vocab captioner from stored vectors (index-time path)",
            32,
            f"{rate(lambda n: cap.caption_vectors(vecs[:n]), 32, 20, 'cpu'):,.0f}",
        )
    )

    from transformers import GitConfig, GitForCausalLM

    devices = (["cpu"] if not args.skip_cpu_git else []) + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        torch.manual_seed(0)
        model = GitForCausalLM(GitConfig()).to(device).eval()  # GIT-base sizes (ViT-B/16 + 6-layer decoder)
        pool_t = torch.randn(32, 3, 224, 224, device=device)

        def gen(n: int, model=model, pool_t=pool_t, device=device) -> None:
            with (
                torch.inference_mode(),
                (
                    torch.autocast("cuda", dtype=torch.bfloat16)
                    if device == "cuda"
                    else torch.autocast("cpu", enabled=False)
                ),
            ):
                model.generate(
                    pixel_values=pool_t[:n],
                    max_new_tokens=20,
                    min_new_tokens=20,
                    do_sample=False,
                    num_beams=1,
                )

        for b in (1, 8, 32) if device == "cuda" else (1, 8):
            rows.append(
                (
                    device,
                    "GIT-base (random init), 20 tokens greedy",
                    b,
                    f"{rate(gen, b, 5 if device == 'cuda' else 1, device):.1f}",
                )
            )
        del model
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print_table(
        f"viewfinder captioning throughput ({torch.get_num_threads()} CPU threads; GPU: {gpu})",
        ("device", "captioner", "batch", "captions/s"),
        rows,
    )


if __name__ == "__main__":
    main()
