"""The recipe that produces mini's heads (viewfinder/models/weights/mini_heads.safetensors).

    python scripts/train_mini.py                 # CPU: feature extraction ~20 min once, training ~2 min
    python scripts/train_mini.py --out build/mini --no-install

1. Frozen-tower features for every train/val pair of tuxpaint, openclipart (minus the held-out
   categories), emoji and fashion-mnist, cached under data/features (scripts/extract_mini_features.py).
2. Each caption also enters in a few phrasings users type ("dog face", "an emoji of dog face",
   "a drawing of a chimpanzee"), sharing the image's features: cheap text-side augmentation.
3. Symmetric InfoNCE on the heads (viewfinder.train.contrastive), early stopping on validation R@5.
"""

from __future__ import annotations

import argparse
import re
import shutil
import time
from pathlib import Path

import numpy as np

from viewfinder.data.datasets import ImageTextPair, load_dataset
from viewfinder.data.features import PairFeatures, frozen_features
from viewfinder.models import load_encoder
from viewfinder.models.mini import shipped_heads_path
from viewfinder.train.contrastive import TrainConfig, train

DATASETS = ("tuxpaint", "openclipart", "emoji", "fashion-mnist")


def phrasings(pair: ImageTextPair) -> list[str]:
    """The caption as given plus the short forms people search with."""
    cap = pair.caption
    dataset = pair.id.split("/")[0]
    out = [cap]
    if dataset == "openclipart":
        name = re.sub(r"\s*\(.*\)$", "", cap).strip()
        out += [name, f"a drawing of {name}"]
    elif dataset == "emoji":
        out += [f"an emoji of {cap}", f"{cap} icon"]
    elif dataset == "tuxpaint":
        plain = cap.rstrip(".").strip()
        out += [plain.lower(), f"a picture of {plain[0].lower() + plain[1:]}"]
    elif dataset == "fashion":
        out += [pair.group, f"a {pair.group}"]
    return list(dict.fromkeys(p for p in out if p))


def augmented(encoder, feats: PairFeatures, pairs: list[ImageTextPair]) -> PairFeatures:
    by_id = {p.id: p for p in pairs}
    rows, texts = [], []
    for i, pid in enumerate(feats.ids):
        for text in phrasings(by_id[pid]):
            rows.append(i)
            texts.append(text)
    import torch

    text_frozen, _ = encoder.frozen_text_tower()
    with torch.inference_mode():
        txt = np.concatenate(
            [text_frozen(texts[i : i + 512]).float().cpu().numpy() for i in range(0, len(texts), 512)]
        )
    rows_a = np.array(rows)
    return PairFeatures([feats.ids[r] for r in rows], feats.image[rows_a], txt, texts)


def gather(encoder, split: str, features: Path) -> tuple[PairFeatures, list[ImageTextPair]]:
    parts, all_pairs = [], []
    for name in DATASETS:
        pairs = load_dataset(name, split)
        parts.append(frozen_features(encoder, pairs, cache=features / f"{name}.npz"))
        all_pairs += pairs
    return PairFeatures(
        sum((p.ids for p in parts), []),
        np.concatenate([p.image for p in parts]),
        np.concatenate([p.text for p in parts]),
        sum((p.captions for p in parts), []),
    ), all_pairs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=Path, default=Path("data/features"))
    ap.add_argument("--out", type=Path, default=Path("build/mini"))
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--no-install", action="store_true", help="do not copy the heads into the package")
    args = ap.parse_args()
    started = time.time()
    encoder = load_encoder("mini:random", device="auto")
    encoder.ensure_loaded()
    import torch

    from viewfinder.models.mini import build_heads

    torch.manual_seed(0)
    encoder.heads = build_heads(256, args.hidden, args.dropout).to(encoder.device)
    train_f, train_pairs = gather(encoder, "train", args.features)
    val_f, _ = gather(encoder, "val", args.features)
    train_f = augmented(encoder, train_f, train_pairs)
    print(
        f"{len(train_pairs)} training pairs -> {len(train_f.ids)} with phrasings; {len(val_f.ids)} "
        "validation pairs"
    )
    if args.out.exists():
        shutil.rmtree(args.out)  # a recipe run starts from scratch (resume is for interrupted runs)
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, patience=8
    )
    result = train(encoder, train_f, val_f, args.out, cfg)
    print(
        f"best val R@5 {result.best_val_recall:.3f} at epoch {result.best_epoch}; training "
        f"{result.seconds:.0f} s, "
        f"total {time.time() - started:.0f} s"
    )
    if not args.no_install:
        shutil.copy2(args.out / "mini_heads.safetensors", shipped_heads_path())
        print(f"installed {shipped_heads_path()} ({shipped_heads_path().stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
