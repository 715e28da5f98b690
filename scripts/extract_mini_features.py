"""Cache mini's frozen-tower features for every offline dataset (CPU: about 9 images/s on 2 cores).

python scripts/extract_mini_features.py --out data/features
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from viewfinder.data.datasets import load_dataset
from viewfinder.data.features import frozen_features
from viewfinder.models import load_encoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("data/features"))
    ap.add_argument(
        "--datasets",
        nargs="+",
        default=["tuxpaint", "openclipart-held-out", "fashion-mnist", "emoji", "openclipart"],
    )
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    encoder = load_encoder("mini", device=args.device, runtime="torch")  # the frozen towers are torch
    for name in args.datasets:
        t = time.time()
        pairs = load_dataset(name)
        frozen_features(encoder, pairs, cache=args.out / f"{name}.npz")
        print(f"{name}: {len(pairs)} pairs in {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
