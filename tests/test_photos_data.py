"""The real-photo data: gcompris' Qt resource files, their labels and translations, the tuxpaint
translations, and the photo splits."""

from pathlib import Path

import pytest

from viewfinder.data.datasets import CLDR_ANNOTATIONS, emoji_translations, photo_split, tuxpaint_translations
from viewfinder.data.gcompris import RCC_DIR, load_gcompris, read_rcc

needs_gcompris = pytest.mark.skipif(not RCC_DIR.is_dir(), reason="needs Debian's gcompris-qt-data")


@needs_gcompris
def test_rcc_reader_finds_files_and_decompresses_them():
    files = read_rcc(RCC_DIR / "explore_farm_animals.rcc")
    qml = [k for k in files if k.endswith("board1.qml")]
    assert qml and b"qsTr(" in files[qml[0]]  # zlib-compressed text, decoded
    webp = [k for k in files if k.endswith("horse.webp")]
    assert webp and files[webp[0]][:4] == b"RIFF" and files[webp[0]][8:12] == b"WEBP"


@needs_gcompris
def test_labelled_photos_with_descriptions_and_translations():
    photos = load_gcompris()
    labels = {p.label for p in photos}
    assert len(photos) > 300
    assert {"Horse", "Giraffe", "Taj Mahal", "gorilla", "wind turbine", "planet Saturn"} <= labels
    horse = next(p for p in photos if p.label == "Horse")
    assert "single-toed hooves" in horse.description
    snail = dict(next(p for p in photos if p.label == "snail").translations)
    assert snail["fr"] and snail["de"] == "die Schnecke"
    assert len({p.data for p in photos}) == len(photos)  # each photo once


def test_photo_split_is_stable_and_holds_out_about_a_third():
    ids = [f"gcompris/x/{i}.webp" for i in range(2000)]
    share = sum(photo_split(i) == "test" for i in ids) / len(ids)
    assert 0.25 < share < 0.35
    assert [photo_split(i) for i in ids] == [photo_split(i) for i in ids]


@pytest.mark.skipif(not Path("/usr/share/tuxpaint/stamps").is_dir(), reason="needs tuxpaint-stamps-default")
def test_tuxpaint_translations():
    table = tuxpaint_translations()
    elephant = next(v for k, v in table.items() if k.endswith("/elephant.png") or k.endswith("/elephant.svg"))
    assert elephant["de"] == "Ein Elefant." and elephant["fr"]


@pytest.mark.skipif(not CLDR_ANNOTATIONS.is_dir(), reason="needs unicode-cldr-core")
def test_emoji_translations():
    table = emoji_translations()
    cat = table["emoji/1F431"]  # the cat face, by its code point as the emoji set names it
    assert cat["en"] == "cat face" and cat["fr"] == "tête de chat" and cat["de"] == "Katzengesicht"
    assert cat["zh_CN"] and cat["zh_TW"] and "fr_CA" not in cat  # regional variants left out
