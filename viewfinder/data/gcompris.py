"""Real labelled photos from Debian's `gcompris-qt-data` (mostly CC-BY-SA / CC0 / public domain
from Wikimedia Commons; a README per folder in the package).

The photos live in Qt binary resource files (`/usr/share/gcompris-qt/rcc/*.rcc`). Their labels
come from the activities' data: the explore activities' titles and descriptions (animals,
monuments), the categorisation activity's folders and file names (tools, household objects,
renewable energy, fishes, monuments), the vocabulary activity's words (with their translations
in ~35 languages), the erase activity's animals and the solar system's planets. Photos are
extracted once into the cache folder; a photo that appears in several activities is kept once.

The rcc format: magic `qres`, a big-endian header (version, tree, data and names offsets), tree
entries of 22 bytes (name offset, flags: 2 = directory with child count and first child, else
country, language, data offset; then a modification time), data as a 4-byte length and bytes,
zlib-compressed behind a 4-byte size when flag 1 is set, names as a 2-byte length, a 4-byte hash
and UTF-16-BE."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

RCC_DIR = Path("/usr/share/gcompris-qt/rcc")
PHOTO = re.compile(r"\.(webp|jpe?g)$", re.I)
# Real names for the categorisation activity's file names where the bare word would mislead.
RENAMES = {
    "windmill": "wind turbine",
    "solar": "solar panels",
    "dam": "hydroelectric dam",
    "geothermal": "geothermal power plant",
    "fish": "fish",
    "blackslate": "blackboard",
    "buffetset": "buffet set",
    "weighing machine": "weighing scale",
    "side cutter": "side cutters",
    "cutting tool": "cutter",
    "le musee": "Louvre museum",
    "zimni palace": "Winter Palace",
    "cathedral": "cathedral",
}
CATEGORY_GROUPS = ("tools", "others", "renewable", "fishes", "monuments")


@dataclass(frozen=True)
class GcomprisPhoto:
    key: str  # activity/file name, stable
    data: bytes
    label: str  # short English label ("gorilla", "Eiffel Tower")
    group: str  # activity or category
    description: str = ""  # one or two English sentences where the activity has them
    translations: tuple[tuple[str, str], ...] = ()  # (language, label) pairs


def read_rcc(path: Path) -> dict[str, bytes]:
    """Every file in a Qt resource file, by its path inside it."""
    raw = path.read_bytes()
    if raw[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource file")
    _version, tree, data, names = struct.unpack(">IIII", raw[4:20])

    def name(offset: int) -> str:
        (n,) = struct.unpack(">H", raw[names + offset : names + offset + 2])
        return raw[names + offset + 6 : names + offset + 6 + 2 * n].decode("utf-16-be")

    out: dict[str, bytes] = {}
    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        entry = tree + index * 22
        name_offset, flags = struct.unpack(">IH", raw[entry : entry + 6])
        here = name(name_offset) if index else ""
        if flags & 2:
            count, first = struct.unpack(">II", raw[entry + 6 : entry + 14])
            stack.extend(
                (child, f"{prefix}{here}/" if here else prefix) for child in range(first, first + count)
            )
            continue
        (offset,) = struct.unpack(">I", raw[entry + 10 : entry + 14])
        (length,) = struct.unpack(">I", raw[data + offset : data + offset + 4])
        body = raw[data + offset + 4 : data + offset + 4 + length]
        if flags & 4:
            continue  # zstd-compressed: not used by the files we read
        out[prefix + here] = zlib.decompress(body[4:]) if flags & 1 else body
    return out


def _words(stem: str) -> str:
    """`leaningTowerOfPisa2` -> `leaning tower of pisa`; `northern_harrier` -> `northern harrier`."""
    stem = re.sub(r"\d+$", "", stem).replace("_", " ")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem).lower().strip()


def _label(stem: str, group: str) -> str:
    words = _words(stem)
    words = RENAMES.get(words, words)
    if group == "monuments" and words == _words(stem):
        words = words.title().replace(" Of ", " of ").replace(" De ", " de ")
    return words


def _unquote(s: str) -> str:
    return json.loads(f'"{s}"')


def _explore(files: dict[str, bytes], activity: str) -> list[GcomprisPhoto]:
    """Blocks with an `image2` photo, a `title` (animals) or `text2` (monuments) and a `text`."""
    out = []
    for path, body in files.items():
        if not path.endswith(".qml"):
            continue
        text = body.decode("utf-8", "replace")
        for block in re.findall(r"\{[^{}]*\"image2\"[^{}]*\}", text):
            image = re.search(r'"image2"\s*:\s*"qrc:/([^"]+)"', block)
            title = re.search(r'"title"\s*:\s*qsTr\("((?:[^"\\]|\\.)*)"\)', block)
            text2 = re.search(r'"text2"\s*:\s*qsTr\("((?:[^"\\]|\\.)*)"\)', block)
            about = re.search(r'"text"\s*:\s*qsTr\("((?:[^"\\]|\\.)*)"\)', block)
            if not image or image.group(1) not in files:
                continue
            label = _unquote(title.group(1)) if title and "animals" in activity else None
            if label is None and text2:
                label = _unquote(text2.group(1))
            if not label or label.lower().startswith("this animal"):
                label = _label(Path(image.group(1)).stem, "monuments" if "monument" in activity else activity)
            out.append(
                GcomprisPhoto(
                    f"{activity}/{Path(image.group(1)).name}",
                    files[image.group(1)],
                    label,
                    activity,
                    _unquote(about.group(1)) if about else "",
                )
            )
    return out


def _words_activity(files: dict[str, bytes]) -> list[GcomprisPhoto]:
    """The vocabulary activity's sample photos, with the word in every language it has."""
    langs = {}
    for path, body in files.items():
        m = re.search(r"content-([A-Za-z_@]+)\.json$", path)
        if m:
            langs[m.group(1)] = json.loads(body.decode("utf-8"))
    out = []
    for path, body in files.items():
        if "words_sample/" in path and PHOTO.search(path):
            stem = Path(path).stem
            english = langs.get("en", {}).get(f"{stem}.ogg") or _words(stem)
            pairs = tuple(
                sorted(
                    (lang, table[f"{stem}.ogg"]) for lang, table in langs.items() if table.get(f"{stem}.ogg")
                )
            )
            out.append(GcomprisPhoto(f"lang/{Path(path).name}", body, english, "words", "", pairs))
    return out


def load_gcompris(rcc_dir: Path = RCC_DIR) -> list[GcomprisPhoto]:
    """Every labelled photo, once (by content)."""
    if not rcc_dir.is_dir():
        return []
    photos: list[GcomprisPhoto] = []
    for activity in ("explore_farm_animals", "explore_world_animals", "explore_monuments"):
        if (rcc_dir / f"{activity}.rcc").exists():
            photos += _explore(read_rcc(rcc_dir / f"{activity}.rcc"), activity.removeprefix("explore_"))
    if (rcc_dir / "lang.rcc").exists():
        photos += _words_activity(read_rcc(rcc_dir / "lang.rcc"))
    if (rcc_dir / "categorization.rcc").exists():
        for path, body in read_rcc(rcc_dir / "categorization.rcc").items():
            group = Path(path).parent.name
            if PHOTO.search(path) and group in CATEGORY_GROUPS:
                photos.append(
                    GcomprisPhoto(f"{group}/{Path(path).name}", body, _label(Path(path).stem, group), group)
                )
    for activity, group, label in (("erase", "animals", None), ("solar_system", "planets", "planet {}")):
        if (rcc_dir / f"{activity}.rcc").exists():
            for path, body in read_rcc(rcc_dir / f"{activity}.rcc").items():
                if PHOTO.search(path) and "/resource/" in path and "background" not in path:
                    name = _words(Path(path).stem)
                    if activity == "solar_system" and name == "sun":
                        text = "the sun"
                    else:
                        text = label.format(name.title()) if label else name
                    photos.append(GcomprisPhoto(f"{activity}/{Path(path).name}", body, text, group))
    seen: set[str] = set()
    unique = []
    for photo in photos:
        digest = hashlib.sha256(photo.data).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(photo)
    return unique


def extract(photos: list[GcomprisPhoto], folder: Path) -> dict[str, Path]:
    """Write each photo once under `folder` (named by its key); key -> file."""
    out = {}
    for photo in photos:
        path = folder / photo.key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(photo.data)
            tmp.replace(path)
        out[photo.key] = path
    return out
