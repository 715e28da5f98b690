"""Precision and recall of `viewfinder duplicates` at each level and threshold, on real photos.

    python scripts/eval_duplicates.py [--model mini] [--out build/duplicates]

The collection: the demo sample's 42 real photos; for each of them an exact copy and four
variants of the same picture (resized to half and saved at JPEG quality 85; saved at quality 35;
5% cropped; stored turned a quarter with an EXIF orientation that turns it back); opencv-doc's
stereo and calibration shots (aloeL/aloeR, leuvenA/leuvenB, and 26 views of one chessboard) and
seven more pairs of shots of one scene (two sides of a rendered head, aerial views, video frames,
a wall from two angles, a retouched photo, a stereo pair of books).
Truth: "near" pairs are a photo and its copies and variants; "similar" pairs add the shots of one
scene. Each level's groups are scored as pairs: two images in one group are a predicted pair."""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from viewfinder import Engine  # noqa: E402
from viewfinder.data.samples import OPENCV_DIR, make_sample  # noqa: E402

SCENES = {
    "aloe": ["aloeL.jpg", "aloeR.jpg"],
    "leuven": ["leuvenA.jpg", "leuvenB.jpg"],
    "chessboard": [f"{side}{i:02d}.jpg" for side in ("left", "right") for i in range(1, 15) if i != 10],
    # pairs of shots of one scene: a rendered head from two sides, aerial views, video frames,
    # a wall from two angles, a retouched photo, a stereo pair
    "suzanne": ["Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"],
    "aero": ["aero1.jpg", "aero3.jpg"],
    "basketball": ["basketball1.png", "basketball2.png"],
    "graffiti": ["graf1.png", "graf3.png"],
    "rubberwhale": ["rubberwhale1.png", "rubberwhale2.png"],
    "ela": ["ela_original.jpg", "ela_modified.jpg"],
    "books": ["left.jpg", "right.jpg"],
}


def variants(src: Path, out: Path) -> list[Path]:
    """An exact copy and four re-encodings of `src` under `out`, named after it."""
    im = Image.open(src).convert("RGB")
    stem = src.stem
    made = [out / f"{stem}__copy{src.suffix}"]
    shutil.copy2(src, made[0])
    half = im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.LANCZOS)
    half.save(out / f"{stem}__half.jpg", quality=85)
    im.save(out / f"{stem}__q35.jpg", quality=35)
    dx, dy = im.width // 40, im.height // 40  # 2.5% off each side: 5% of each dimension
    im.crop((dx, dy, im.width - dx, im.height - dy)).save(out / f"{stem}__crop5.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: the stored pixels are turned back
    im.transpose(Image.Transpose.ROTATE_90).save(out / f"{stem}__exif6.jpg", quality=90, exif=exif)
    return made + [out / f"{stem}__{v}.jpg" for v in ("half", "q35", "crop5", "exif6")]


def build(out: Path) -> tuple[Path, dict[str, str], dict[str, str]]:
    """The folder, and for each file its picture (near truth) and its scene (similar truth)."""
    photos = out / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    sample = out / "sample"
    if not sample.exists():
        make_sample(sample)
    picture, scene = {}, {}
    for src in sorted(p for p in sample.rglob("*") if p.is_file()):
        folder = photos / src.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, folder / src.name)
        for f in [folder / src.name] + variants(src, folder):
            picture[str(f.resolve())] = scene[str(f.resolve())] = f"{src.parent.name}/{src.stem}"
    in_sample = {Path(p).name for p in picture}
    for name, files in SCENES.items():
        for f in files:
            if f in in_sample:  # aloe and leuven are in the sample: their copies join the scene
                for path in picture:
                    if Path(path).name.split("__")[0].removesuffix(".jpg") == Path(f).stem:
                        scene[path] = f"scene:{name}"
            elif (OPENCV_DIR / f).exists():
                folder = photos / "scenes"
                folder.mkdir(exist_ok=True)
                shutil.copy2(OPENCV_DIR / f, folder / f)
                picture[str((folder / f).resolve())] = f"scenes/{f}"
                scene[str((folder / f).resolve())] = f"scene:{name}"
    return photos, picture, scene


def truth_pairs(label: dict[str, str]) -> set[frozenset[str]]:
    by: dict[str, list[str]] = {}
    for path, key in label.items():
        by.setdefault(key, []).append(path)
    return {frozenset(p) for members in by.values() for p in itertools.combinations(members, 2)}


def predicted_pairs(groups) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations(g.paths, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini")
    ap.add_argument("--out", type=Path, default=Path("build/duplicates"))
    args = ap.parse_args()
    photos, picture, scene = build(args.out)
    db = args.out / "db"
    shutil.rmtree(db, ignore_errors=True)
    with Engine.open(db, model=args.model) as engine:
        report = engine.index(photos, progress=False)
        print(f"{report.embedded} images indexed ({len(report.failed)} failed) with {args.model}")
        near, similar = truth_pairs(picture), truth_pairs(scene)
        # the byte-for-byte pairs: each photo and its __copy
        copies = {p: p.replace("__copy", "") for p in picture if Path(p).stem.endswith("__copy")}
        exact = {frozenset((c, o)) for c, o in copies.items()}
        print(f"truth: {len(exact)} exact pairs, {len(near)} near pairs, {len(similar)} similar pairs\n")
        print("| level | threshold | groups | predicted pairs | precision | recall |")
        print("|---|---|---|---|---|---|")
        rows = [("exact", None, exact)]
        rows += [("near", t / 100, near) for t in range(88, 100)]
        rows += [("similar", t / 100, similar) for t in range(70, 94, 2)]
        for level, threshold, truth in rows:
            groups = engine.duplicates(level, threshold)
            pred = predicted_pairs(groups)
            hit = len(pred & truth)
            precision = hit / len(pred) if pred else 1.0
            shown = "-" if threshold is None else f"{threshold:.2f}"
            recall = hit / len(truth)
            print(f"| {level} | {shown} | {len(groups)} | {len(pred)} | {precision:.3f} | {recall:.3f} |")


if __name__ == "__main__":
    main()
