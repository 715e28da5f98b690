"""The sample folder of real photos (demo, tests, photo evaluation), assembled from installed
packages: scikit-image (pip) and, when installed, Debian's opencv-doc and mate-backgrounds.
Nothing is copied into the repository: the licences differ and the packages ship the files."""

from __future__ import annotations

import shutil
from pathlib import Path

SKIMAGE = [
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "horse.png",
    "hubble_deep_field.jpg",
    "coins.png",
    "camera.png",
    "moon.png",
    "retina.jpg",
    "brick.png",
]
OPENCV = [
    "fruits.jpg",
    "butterfly.jpg",
    "baboon.jpg",
    "apple.jpg",
    "orange.jpg",
    "messi5.jpg",
    "building.jpg",
    "squirrel_cls.jpg",
    "starry_night.jpg",
    "aloeL.jpg",
    "aloeR.jpg",
    "leuvenA.jpg",
    "leuvenB.jpg",
    "home.jpg",
    "smarties.png",
    "HappyFish.jpg",
    "sudoku.png",
    "board.jpg",
]
OPENCV_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
MATE_DIR = Path("/usr/share/backgrounds/mate/nature")


def skimage_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def make_sample(out: Path) -> int:
    count = 0
    sources = [
        (skimage_dir(), SKIMAGE, "skimage"),
        (OPENCV_DIR, OPENCV, "opencv"),
        (MATE_DIR, sorted(p.name for p in MATE_DIR.glob("*.jpg")) if MATE_DIR.is_dir() else [], "nature"),
    ]
    for folder, names, sub in sources:
        for name in names:
            src = folder / name
            if src.exists():
                dst = out / sub / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.exists():
                    shutil.copy2(src, dst)
                count += 1
    return count
