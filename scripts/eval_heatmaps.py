"""Do region heatmaps point at the right place? Paste tuxpaint stamps (test split, never trained
on) onto real wallpaper photos at a random known box, search each composite with the stamp's
caption, and count how often the heatmap's peak falls inside the box, for the default method
(a model's patches where it has them) and for occlusion. Random guessing hits the box as often as
its share of the image's area.

    python scripts/eval_heatmaps.py                       # mini, 60 composites: about 4 min on 2 cores
    python scripts/eval_heatmaps.py --model open_clip:ViT-B-32/laion2b_s34b_b79k
    python scripts/eval_heatmaps.py --sheet docs/images/heatmaps.png   # also draw the first 8
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from viewfinder.data.datasets import load_dataset, wallpapers
from viewfinder.models import load_encoder
from viewfinder.query.regions import overlay, region_heatmap


def composites(n: int, seed: int) -> list[tuple[Image.Image, str, tuple[int, int, int, int]]]:
    """(composite, caption, pasted box) for n stamps on photos."""
    rng = random.Random(seed)
    stamps = [p for p in load_dataset("tuxpaint", "test") if p.source == "file"]
    backgrounds = wallpapers()
    out = []
    for _ in range(n):
        stamp = rng.choice(stamps)
        with Image.open(rng.choice(backgrounds)) as bg_im:
            bg = bg_im.convert("RGB")
        bg.thumbnail((640, 640))
        with Image.open(stamp.locator) as st_im:
            st = st_im.convert("RGBA")
        scale = rng.uniform(0.25, 0.45) * min(bg.size) / max(st.size)
        st = st.resize(
            (max(1, int(st.width * scale)), max(1, int(st.height * scale))), Image.Resampling.LANCZOS
        )
        x, y = rng.randint(0, bg.width - st.width), rng.randint(0, bg.height - st.height)
        bg.paste(st, (x, y), st)
        out.append((bg, stamp.caption, (x, y, x + st.width, y + st.height)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument(
        "--cells", nargs="+", type=int, default=[8], help="occlusion grid cells along the longer side"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sheet", type=Path, help="draw the first 8 composites with their heatmaps here")
    args = ap.parse_args()

    encoder = load_encoder(args.model)
    encoder.ensure_loaded()
    cases = composites(args.n, args.seed)
    share = np.mean([(b[2] - b[0]) * (b[3] - b[1]) / (im.width * im.height) for im, _, b in cases])
    queries = encoder.encode_texts([caption for _, caption, _ in cases])
    print(f"{args.n} composites, model {args.model}; random hits the box {share:.1%} of the time")
    print("| method | peak inside the pasted box | seconds per image (2 cores) |")
    print("|---|---|---|")
    shown = []
    methods = [("auto", args.cells[0])] + [("occlusion", cells) for cells in args.cells]
    for method, cells in methods:
        hits, started = 0, time.perf_counter()
        for (image, _, (x0, y0, x1, y1)), query in zip(cases, queries):
            heat = region_heatmap(encoder, image, query, cells, method)
            px, py = heat.peak()
            hits += x0 <= px * image.width <= x1 and y0 <= py * image.height <= y1
            if len(shown) < 8:  # the default method's first 8
                shown.append(overlay(image, heat))
        per = (time.perf_counter() - started) / len(cases)
        name = f"occlusion, {cells} cells" if method == "occlusion" else "default (`auto`)"
        print(f"| {name} | {hits / len(cases):.2f} ({hits}/{len(cases)}) | {per:.2f} |", flush=True)
    if args.sheet and shown:
        thumbs = [im.copy() for im in shown]
        for t in thumbs:
            t.thumbnail((320, 320))
        sheet = Image.new("RGB", (4 * 320, 2 * 320), "white")
        for i, t in enumerate(thumbs):
            sheet.paste(t, ((i % 4) * 320, (i // 4) * 320))
        sheet.save(args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
