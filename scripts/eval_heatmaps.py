"""Do region heatmaps point at the right place? Paste tuxpaint stamps (test split, never trained
on) onto real wallpaper photos at random known boxes, search each composite with a stamp's
caption, and count how often the heatmap's peak falls inside that stamp's box.

Two tests: one stamp a photo (random guessing hits the box as often as its share of the image's
area; a query-blind saliency map already finds the one object there), and two stamps a photo with
different captions, each searched in turn (a query-blind map can at best pick one of the two: it
shows whether the heatmap follows the query). Rows: the query's own map (the model's patches
where it has them, else occlusion), the saliency prior alone, and the two together (the default).

    python scripts/eval_heatmaps.py                       # mini, 60 + 40 composites: about 5 min on 2 cores
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
from viewfinder.query.regions import FOCUS_WEIGHT, Heatmap, focus_map, overlay, query_map, scaled


def composites(
    n: int, seed: int, stamps_each: int = 1
) -> list[tuple[Image.Image, list[tuple[str, tuple[int, int, int, int]]]]]:
    """n photos, each with `stamps_each` stamps of different captions pasted at non-overlapping
    places: (composite, [(caption, pasted box), ...])."""
    rng = random.Random(seed)
    stamps = [p for p in load_dataset("tuxpaint", "test") if p.source == "file"]
    backgrounds = wallpapers()
    out = []
    while len(out) < n:
        chosen = rng.sample(stamps, stamps_each)
        if len({s.caption for s in chosen}) < stamps_each:
            continue
        with Image.open(rng.choice(backgrounds)) as bg_im:
            bg = bg_im.convert("RGB")
        bg.thumbnail((640, 640))
        pasted: list[tuple[str, tuple[int, int, int, int]]] = []
        for stamp in chosen:
            with Image.open(stamp.locator) as st_im:
                st = st_im.convert("RGBA")
            scale = rng.uniform(0.25, 0.45 if stamps_each == 1 else 0.4) * min(bg.size) / max(st.size)
            st = st.resize(
                (max(1, int(st.width * scale)), max(1, int(st.height * scale))), Image.Resampling.LANCZOS
            )
            for _ in range(50):
                x, y = rng.randint(0, bg.width - st.width), rng.randint(0, bg.height - st.height)
                box = (x, y, x + st.width, y + st.height)
                if not any(_overlap(box, other) for _, other in pasted):
                    bg.paste(st, (x, y), st)
                    pasted.append((stamp.caption, box))
                    break
        if len(pasted) == stamps_each:
            out.append((bg, pasted))
    return out


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(raw: np.ndarray, image: Image.Image, box: tuple[int, int, int, int]) -> bool:
    return Heatmap(raw).peak_inside(box, image.width, image.height)


def evaluate(encoder, cases, methods: list[tuple[str, int]], shown: list) -> list[str]:
    """Table rows: for each method the query's map, the prior alone and both, over every
    (composite, stamp) pair."""
    queries = encoder.encode_texts([caption for _, pasted in cases for caption, _ in pasted])
    total = len(queries)
    blind, rows = 0, []
    for method, cells in methods:
        alone = both = 0
        started = time.perf_counter()
        q = iter(queries)
        for image, pasted in cases:
            prior = None  # one saliency pass a photo, whichever stamp is searched
            for _, box in pasted:
                raw = query_map(encoder, image, next(q), cells, method)
                prior = focus_map(image, raw.shape) if prior is None else prior
                combined = raw + FOCUS_WEIGHT * prior
                alone += _inside(raw, image, box)
                both += _inside(combined, image, box)
                if method == methods[0][0]:
                    blind += _inside(prior, image, box)
                if len(shown) < 8 and method == "auto":
                    shown.append(overlay(image, scaled(combined)))
        per = (time.perf_counter() - started) / total
        name = f"occlusion, {cells} cells" if method == "occlusion" else "the model's patches (`auto`)"
        rows.append(f"| {name} | {_rate(alone, total)} | {_rate(both, total)} | {per:.2f} |")
    rows.append(f"| saliency prior alone (ignores the query) | | {_rate(blind, total)} | |")
    return rows


def _rate(hits: int, total: int) -> str:
    return f"{hits / total:.2f} ({hits}/{total})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini")
    ap.add_argument("--n", type=int, default=60, help="photos with one stamp")
    ap.add_argument("--pairs", type=int, default=40, help="photos with two stamps")
    ap.add_argument(
        "--cells", nargs="+", type=int, default=[8], help="occlusion grid cells along the longer side"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sheet", type=Path, help="draw the first 8 composites with their heatmaps here")
    args = ap.parse_args()

    encoder = load_encoder(args.model)
    encoder.ensure_loaded()
    methods = [("auto", args.cells[0])] + [("occlusion", cells) for cells in args.cells]
    shown: list = []
    for stamps_each, n in ((1, args.n), (2, args.pairs)):
        if not n:
            continue
        cases = composites(n, args.seed, stamps_each)
        share = np.mean(
            [
                (b[2] - b[0]) * (b[3] - b[1]) / (im.width * im.height)
                for im, pasted in cases
                for _, b in pasted
            ]
        )
        print(
            f"\n{n} photos with {stamps_each} stamp(s) each, model {args.model}, seed {args.seed}; "
            f"random hits the box {share:.1%} of the time"
        )
        print(
            "| query's map | peak in the box: the query's map | with the saliency prior (default) "
            "| seconds a map (2 cores) |"
        )
        print("|---|---|---|---|")
        for row in evaluate(encoder, cases, methods, shown):
            print(row, flush=True)
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
