"""Frozen-tower features for mini v2's heads: DINOv2 (768) + EfficientNet-Lite0 penultimate (1280)
+ its class logits (1000) per image, MiniLM (384) per caption, one npz per set under --out.

    python scripts/extract_mini_v2_features.py            # CPU, 2 cores: about 20 min

Beside each npz, NAME.captions.json maps each id to [caption, group].

Sets, in the order they are made (each is skipped when its npz exists, so a rerun resumes):
- gcompris (real labelled photos, all splits), templates (tuxpaint-data photos), photos (ours):
  evaluation and training material on real photos;
- gcompris-views: 3 augmented views of each gcompris train photo (crop, flip, colour, blur, JPEG);
- wallpaper-views: 4 views of each unlabelled wallpaper photo (captioned later by the classifier);
- composites: tuxpaint train stamps pasted at a random place and size on wallpaper photos;
- drawings: the tuxpaint, openclipart, emoji and fashion-mnist val and test splits, and a
  subsample of their train splits (all of tuxpaint, 2,000 openclipart, 1,000 emoji, fashion);
- drawings-rest: the rest of openclipart's train split."""

from __future__ import annotations

import argparse
import io
import json
import random
from pathlib import Path

from PIL import Image, ImageFilter

from viewfinder.data.datasets import ImageTextPair, load_dataset, wallpapers
from viewfinder.data.features import frozen_features
from viewfinder.models import load_encoder
from viewfinder.models.mini import HeadsConfig, build_heads

TRAIN_SAMPLE = {"openclipart": 2000, "emoji": 1000}


def augment(im: Image.Image, rng: random.Random) -> Image.Image:
    """A random view: crop 40-100% of the area, maybe mirrored, colour-jittered, blurred, re-encoded."""
    from torchvision import transforms as T

    im = T.RandomResizedCrop(320, scale=(0.4, 1.0))(im)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    im = T.ColorJitter(0.3, 0.3, 0.3, 0.03)(im)
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=rng.randint(35, 90))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def write_views(
    sources: list[tuple[str, Path, str, str]], n: int, folder: Path, seed: int
) -> list[ImageTextPair]:
    """n augmented views of each (id, file, caption, group), written as JPEGs under folder."""
    import torch

    rng = random.Random(seed)
    torch.manual_seed(seed)  # torchvision's random transforms draw from torch
    pairs = []
    for pid, path, caption, group in sources:
        with Image.open(path) as im:
            base = im.convert("RGB")
            base.thumbnail((640, 640))
        for v in range(n):
            out = folder / f"{pid.replace('/', '_')}-{v}.jpg"
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                augment(base, rng).save(out, quality=92)
            pairs.append(ImageTextPair(f"{pid}#view{v}", caption, group, "file", str(out)))
    return pairs


def write_composites(n: int, folder: Path, seed: int) -> list[ImageTextPair]:
    """Cartoon stamps on real photo backgrounds, captioned by the stamp's caption."""
    stamps = [p for p in load_dataset("tuxpaint", "train") if p.locator.endswith(".png")]
    backgrounds = wallpapers()
    pairs = []
    for i in range(n):
        rng = random.Random(f"{seed}-{i}")  # its own draws: a rerun that finds the file agrees with it
        stamp, bg_path = rng.choice(stamps), rng.choice(backgrounds)
        out = folder / f"composite-{i}.jpg"
        if not out.exists():
            with Image.open(bg_path) as bg_im:
                bg = bg_im.convert("RGB")
            bg.thumbnail((640, 640))
            side = min(bg.size)
            with Image.open(stamp.locator) as st_im:
                st = st_im.convert("RGBA")
            scale = rng.uniform(0.3, 0.7) * side / max(st.size)
            st = st.resize(
                (max(1, int(st.width * scale)), max(1, int(st.height * scale))), Image.Resampling.LANCZOS
            )
            x, y = rng.randint(0, bg.width - st.width), rng.randint(0, bg.height - st.height)
            bg.paste(st, (x, y), st)
            out.parent.mkdir(parents=True, exist_ok=True)
            bg.save(out, quality=90)
        pairs.append(ImageTextPair(f"composite/{i}", stamp.caption, "composite", "file", str(out)))
    return pairs


def drawing_pairs(rest: bool = False) -> list[ImageTextPair]:
    """The drawing sets' val and test splits and a sample of their train splits; rest=True: the
    train pairs the sample left out (a second, optional set)."""
    rng = random.Random(0)
    out, left = [], []
    for name in ("tuxpaint", "openclipart", "emoji", "fashion-mnist"):
        out += load_dataset(name, "val") + load_dataset(name, "test")
        train = load_dataset(name, "train")
        k = TRAIN_SAMPLE.get(name)
        sample = rng.sample(train, k) if k and k < len(train) else train
        out += sample
        chosen = {p.id for p in sample}
        left += [p for p in train if p.id not in chosen and name == "openclipart"]
    return left if rest else out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("data/features-v2"))
    ap.add_argument("--images", type=Path, default=Path("data/v2-images"))
    ap.add_argument("--composites", type=int, default=600)
    args = ap.parse_args()
    encoder = load_encoder("mini:random", device="auto")
    encoder.ensure_loaded()
    encoder.use_heads(build_heads(HeadsConfig(image_features="dino+classifier", class_path=True)))
    gcompris = load_dataset("gcompris")
    train = [p for p in load_dataset("gcompris", "train")]
    sets = {
        "gcompris": lambda: gcompris,
        "templates": lambda: load_dataset("templates"),
        "photos": lambda: load_dataset("photos"),
        "gcompris-views": lambda: write_views(
            [(p.id, Path(p.locator), p.caption, p.group) for p in train], 3, args.images / "views", 1
        ),
        "wallpaper-views": lambda: write_views(
            [(f"wallpaper/{i}", f, "", "wallpaper") for i, f in enumerate(wallpapers())],
            4,
            args.images / "walls",
            2,
        ),
        "composites": lambda: write_composites(args.composites, args.images / "composites", 3),
        "drawings": drawing_pairs,
        "drawings-rest": lambda: drawing_pairs(rest=True),
    }
    for name, make in sets.items():
        cache = args.out / f"{name}.npz"
        pairs = make()
        feats = frozen_features(encoder, pairs, cache=cache)
        (args.out / f"{name}.captions.json").write_text(
            json.dumps({p.id: [p.caption, p.group] for p in pairs}, ensure_ascii=False)
        )
        print(f"{name}: {len(pairs)} pairs, image features {feats.image.shape}", flush=True)


if __name__ == "__main__":
    main()
