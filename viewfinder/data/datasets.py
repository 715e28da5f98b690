"""Loaders for the real image-text data we can have offline (Debian packages), with fixed splits.

Every record is an `ImageTextPair`; `load_image` turns it into an RGB PIL image. Splits are a
pure function of the record id (a keyed hash), so they never move when data is added and the
test split is never trained on."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..config import Config
from ..images import to_rgb

TUXPAINT_ROOT = Path("/usr/share/tuxpaint/stamps")
OPENCLIPART_ROOT = Path("/usr/share/openclipart/png")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
# Debian unicode-cldr-core: each emoji's short name in ~120 languages (CLDR annotations)
CLDR_ANNOTATIONS = Path("/usr/share/unicode/cldr/common/annotations")
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "T-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]
# openclipart categories the base model never sees: the domain for the fine-tuning demonstration.
HELD_OUT_CATEGORIES = ("transportation",)
SPLITS = ("train", "val", "test")
DATASETS = ("tuxpaint", "openclipart", "emoji", "fashion-mnist")


@dataclass(frozen=True)
class ImageTextPair:
    id: str  # stable: dataset + relative path (or index)
    caption: str
    group: str  # coarse category (folder), the label for classification sets
    source: str  # file | svg | emoji | fashion
    locator: str  # path, emoji character or fashion index

    @property
    def split(self) -> str:
        return split_of(self.id)


def split_of(record_id: str, val: float = 0.1, test: float = 0.1) -> str:
    """80/10/10 by a keyed hash of the id."""
    h = (
        int.from_bytes(hashlib.sha256(b"viewfinder-split-v1:" + record_id.encode()).digest()[:8], "big")
        / 2**64
    )
    return "test" if h < test else "val" if h < test + val else "train"


def caption_groups(captions: Sequence[str]) -> tuple[list[str], list[int], dict[str, set[int]]]:
    """Unique captions, the row of each one's first pair, and the image rows that share it."""
    groups: dict[str, set[int]] = {}
    first: dict[str, int] = {}
    for i, c in enumerate(captions):
        groups.setdefault(c, set()).add(i)
        first.setdefault(c, i)
    unique = list(groups)
    return unique, [first[c] for c in unique], groups


def load_image(pair: ImageTextPair, size: int | None = None) -> Image.Image:
    if pair.source == "file":
        with Image.open(pair.locator) as im:
            im.draft("RGB", (size * 2, size * 2)) if size else None
            return to_rgb(im)
    if pair.source == "svg":
        import cairosvg

        # Illustrator exports declare XML entities; these are trusted files from a Debian package.
        png = cairosvg.svg2png(url=pair.locator, output_width=size or 448, unsafe=True)
        return to_rgb(Image.open(io.BytesIO(png)))
    if pair.source == "emoji":
        return render_emoji(pair.locator)
    if pair.source == "fashion":
        return Image.fromarray(_fashion_images()[int(pair.locator)]).convert("RGB")
    raise ValueError(f"unknown source {pair.source!r} for {pair.id}")


# -- tuxpaint ------------------------------------------------------------------------------------
def tuxpaint(root: Path = TUXPAINT_ROOT) -> list[ImageTextPair]:
    """Stamps with the English first line of the .txt beside each as the caption."""
    pairs = []
    for txt in sorted(root.rglob("*.txt")):
        caption = (
            txt.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
            if txt.stat().st_size
            else ""
        )
        if not caption:
            continue
        for ext, source in ((".png", "file"), (".svg", "svg")):
            img = txt.with_suffix(ext)
            if img.exists():
                rel = img.relative_to(root)
                pairs.append(ImageTextPair(f"tuxpaint/{rel}", caption, rel.parts[0], source, str(img)))
                break
    return pairs


def tuxpaint_translations(root: Path = TUXPAINT_ROOT) -> dict[str, dict[str, str]]:
    """Pair id -> {language: caption} from the `xx.utf8=...` lines after each stamp's English
    caption (about 100 languages; fr, pt, ja, cs and others for ~950 stamps)."""
    out = {}
    for pair in tuxpaint(root):
        txt = Path(pair.locator).with_suffix(".txt")
        found = {}
        for line in txt.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
            lang, sep, text = line.partition(".utf8=")
            if sep and text.strip():
                found[lang.strip()] = text.strip()
        out[pair.id] = found
    return out


# -- openclipart ---------------------------------------------------------------------------------
def _author_suffixes(stems: list[list[str]]) -> set[tuple[str, ...]]:
    """Trailing 2-3 word runs shared by many differently named files are author names
    ("dan_gerhards", "architetto_franc"), not content."""
    prefixes: dict[tuple[str, ...], set[tuple[str, ...]]] = defaultdict(set)
    for words in stems:
        for k in (2, 3):
            if len(words) > k:
                prefixes[tuple(words[-k:])].add(tuple(words[:-k]))
    return {suffix for suffix, pre in prefixes.items() if len(pre) >= 4}


def clean_clipart_name(words: list[str], authors: set[tuple[str, ...]]) -> str:
    for k in (3, 2):
        if len(words) > k and tuple(words[-k:]) in authors:
            words = words[:-k]
            break
    return " ".join(words)


def openclipart(root: Path = OPENCLIPART_ROOT, include_held_out: bool = False) -> list[ImageTextPair]:
    files = sorted(root.rglob("*.png"))
    stems = [re.sub(r"_\d+$", "", f.stem).lower().split("_") for f in files]
    stems = [[w for w in s if w] for s in stems]
    authors = _author_suffixes(stems)
    pairs = []
    for f, words in zip(files, stems):
        rel = f.relative_to(root)
        category = rel.parts[0]
        if _too_large(f):
            continue
        if category in ("computer", "special"):  # mostly icons and gradients (DATA.md)
            continue
        if category in HELD_OUT_CATEGORIES and not include_held_out:
            continue
        name = clean_clipart_name(words, authors)
        where = " ".join(p.replace("_", " ") for p in rel.parts[:-1])
        pairs.append(ImageTextPair(f"openclipart/{rel}", f"{name} ({where})", category, "file", str(f)))
    return pairs


def _too_large(path: Path, max_pixels: int = Config.max_pixels) -> bool:
    """A few files are decompression bombs (e.g. 623 M pixels): real bad input, left out."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                return im.size[0] * im.size[1] > max_pixels
        except (OSError, Image.DecompressionBombError):
            return True


def openclipart_held_out(root: Path = OPENCLIPART_ROOT) -> list[ImageTextPair]:
    return [p for p in openclipart(root, include_held_out=True) if p.group in HELD_OUT_CATEGORIES]


# -- emoji ---------------------------------------------------------------------------------------
def emoji(font: Path = EMOJI_FONT) -> list[ImageTextPair]:
    """Single-codepoint colour emoji the font really has, named by Unicode ("DOG FACE" -> "dog face")."""
    from fontTools.ttLib import TTFont

    cmap = TTFont(str(font), lazy=True)["cmap"].getBestCmap()
    pairs = []
    for cp in sorted(cmap):
        ch = chr(cp)
        name = unicodedata.name(ch, "")
        if cp < 0x2000 or not name or unicodedata.category(ch) != "So":
            continue
        pairs.append(ImageTextPair(f"emoji/{cp:X}", name.lower(), "emoji", "emoji", ch))
    return pairs


def emoji_translations(root: Path = CLDR_ANNOTATIONS) -> dict[str, dict[str, str]]:
    """Pair id ("emoji/1F431") -> {language: CLDR's short name} ("fr": "tête de chat"), from one
    annotation file per language; regional variants (fr_CA, ...) are left out, Chinese is named
    as tuxpaint names it (zh_CN, zh_TW)."""
    import xml.etree.ElementTree as ET

    out: dict[str, dict[str, str]] = {}
    for path in sorted(root.glob("*.xml")) if root.is_dir() else []:
        lang = {"zh": "zh_CN", "zh_Hant": "zh_TW"}.get(path.stem, path.stem)
        if ("_" in lang and lang not in ("zh_CN", "zh_TW")) or lang == "root":
            continue
        for node in ET.parse(path).getroot().iter("annotation"):
            if node.get("type") == "tts" and len(node.get("cp", "")) == 1 and (node.text or "").strip():
                out.setdefault(f"emoji/{ord(node.get('cp')):X}", {})[lang] = node.text.strip()
    return out


def render_emoji(ch: str, font: Path = EMOJI_FONT) -> Image.Image:
    from PIL import ImageDraw, ImageFont

    ttf = ImageFont.truetype(str(font), 109)
    canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((8, 8), ch, font=ttf, embedded_color=True)
    return to_rgb(canvas.crop(canvas.getbbox() or (0, 0, 160, 160)))


# -- fashion-mnist -------------------------------------------------------------------------------
_FASHION_CACHE: dict[str, np.ndarray] = {}


def _fashion_images() -> np.ndarray:
    if "images" not in _FASHION_CACHE:
        parts = []
        for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
            raw = gzip.open(FASHION_ROOT / name).read()
            parts.append(np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28))
        _FASHION_CACHE["images"] = 255 - np.concatenate(parts)  # dark product on white, like the clip art
    return _FASHION_CACHE["images"]


def _fashion_labels() -> np.ndarray:
    parts = [
        np.frombuffer(gzip.open(FASHION_ROOT / n).read(), np.uint8, offset=8)
        for n in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    ]
    return np.concatenate(parts)


def fashion_mnist(per_class: int | None = 100) -> list[ImageTextPair]:
    """A balanced, deterministic subset (the first `per_class` of each class by index)."""
    labels = _fashion_labels()
    seen: Counter[int] = Counter()
    pairs = []
    for i, lab in enumerate(labels):
        if per_class is not None and seen[int(lab)] >= per_class:
            continue
        seen[int(lab)] += 1
        name = FASHION_CLASSES[int(lab)]
        pairs.append(ImageTextPair(f"fashion/{i}", f"a photo of a {name}", name, "fashion", str(i)))
    return pairs


# -- real photos, with queries we wrote ------------------------------------------------------------
PHOTO_QUERIES = {
    "skimage/astronaut.png": "an astronaut",
    "skimage/coffee.png": "a cup of coffee",
    "skimage/chelsea.png": "a cat",
    "skimage/rocket.jpg": "a rocket",
    "skimage/motorcycle_left.png": "a motorcycle",
    "skimage/horse.png": "a horse",
    "skimage/coins.png": "old coins",
    "skimage/moon.png": "the surface of the moon",
    "skimage/hubble_deep_field.jpg": "galaxies in deep space",
    "opencv/fruits.jpg": "a pile of fruit",
    "opencv/butterfly.jpg": "a butterfly",
    "opencv/baboon.jpg": "a monkey",
    "opencv/apple.jpg": "an apple",
    "opencv/orange.jpg": "an orange",
    "opencv/messi5.jpg": "a football player",
    "opencv/building.jpg": "a building",
    "opencv/squirrel_cls.jpg": "a squirrel",
    "opencv/starry_night.jpg": "a painting of a starry night",
    "opencv/HappyFish.jpg": "a fish",
    "opencv/smarties.png": "colourful sweets",
    "opencv/sudoku.png": "a sudoku puzzle",
    "nature/LadyBird.jpg": "a ladybird",
    "nature/YellowFlower.jpg": "a yellow flower",
    "nature/Dune.jpg": "sand dunes in the desert",
    "nature/RainDrops.jpg": "raindrops",
    "nature/Storm.jpg": "a storm",
}


def photos() -> list[ImageTextPair]:
    """Real photos (scikit-image, opencv-doc, mate-backgrounds) with one query each; all in
    the test split: nothing here is ever trained on."""
    import tempfile

    from .samples import make_sample

    folder = Path(tempfile.gettempdir()) / "viewfinder-eval-photos"
    make_sample(folder)
    return [
        ImageTextPair(f"photos/{rel}", q, rel.split("/")[0], "file", str(folder / rel))
        for rel, q in PHOTO_QUERIES.items()
        if (folder / rel).exists()
    ]


# -- real labelled photos (gcompris) and photo templates (tuxpaint-data) ---------------------------
TEMPLATES_ROOT = Path("/usr/share/tuxpaint/templates")
WALLPAPER_ROOTS = (
    Path("/usr/share/wallpapers"),  # plasma-workspace-wallpapers, lomiri-wallpapers
    Path("/usr/share/backgrounds"),  # ukui-wallpapers (mate's nature photos are an evaluation set)
)
# Real photos are few: a larger test share gives a steadier measurement (keyed hash, never moves).
PHOTO_TEST_SHARE = 0.3


def photo_split(record_id: str) -> str:
    return split_of(record_id, val=0.1, test=PHOTO_TEST_SHARE)


def gcompris() -> list[ImageTextPair]:
    """gcompris-qt-data's labelled photos (data/gcompris.py), extracted once into the cache;
    caption = the English label. Split by `photo_split` (60/10/30); `split` is read from the id,
    so the pair's own `.split` (80/10/10) is not used for this set."""
    from ..config import default_cache_dir
    from .gcompris import extract, load_gcompris

    found = load_gcompris()
    files = extract(found, default_cache_dir() / "gcompris")
    return [ImageTextPair(f"gcompris/{p.key}", p.label, p.group, "file", str(files[p.key])) for p in found]


def gcompris_translations() -> dict[str, dict[str, str]]:
    """Pair id -> {language: label} for the gcompris photos whose label has translations."""
    from .gcompris import load_gcompris

    return {f"gcompris/{p.key}": dict(p.translations) for p in load_gcompris() if p.translations}


def templates() -> list[ImageTextPair]:
    """tuxpaint-data's 19 photo templates, captioned by their file names ("ocean waves");
    an evaluation-only set."""
    if not TEMPLATES_ROOT.is_dir():
        return []
    return [
        ImageTextPair(f"templates/{f.name}", f.stem.replace("_", " "), "templates", "file", str(f))
        for f in sorted(TEMPLATES_ROOT.glob("*.jpg"))
    ]


def wallpapers() -> list[Path]:
    """Unlabelled real photos from the wallpaper packages (backgrounds and pseudo-labels)."""
    found = []
    for root in WALLPAPER_ROOTS:
        if root.is_dir():
            found += [
                p
                for p in root.rglob("*")
                if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                and "mate" not in p.parts
                and not p.name.startswith("screenshot")
            ]
    # plasma ships each wallpaper in several sizes (NAME/contents/images/WxH.jpg): keep the largest
    best: dict[Path, Path] = {}
    for p in found:
        key = p.parents[2] if p.parent.name in ("images", "images_dark") else p
        if p.stat().st_size > 50_000 and (key not in best or p.stat().st_size > best[key].stat().st_size):
            best[key] = p
    return sorted(best.values())


def load_dataset(name: str, split: str | None = None) -> list[ImageTextPair]:
    loaders = {
        "tuxpaint": tuxpaint,
        "openclipart": openclipart,
        "emoji": emoji,
        "fashion-mnist": fashion_mnist,
        "openclipart-held-out": openclipart_held_out,
        "photos": photos,
        "gcompris": gcompris,
        "templates": templates,
    }
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(loaders)}")
    pairs = loaders[name]()
    if name in ("photos", "templates"):  # evaluation-only sets
        return pairs if split in (None, "test") else []
    if name == "gcompris":
        return [p for p in pairs if split is None or photo_split(p.id) == split]
    return [p for p in pairs if split is None or p.split == split]
