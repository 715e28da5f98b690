"""Photo metadata (EXIF date with its time zone, camera, lens, GPS; file time where there is no
date) and the one filter language, inline, as flags and as API fields, on real photos."""

import datetime
import subprocess
import sys

import pytest
from PIL import Image

from viewfinder import Engine
from viewfinder.errors import QueryError
from viewfinder.ingest import places
from viewfinder.ingest.metadata import read_metadata
from viewfinder.query.filters import Filters, split_filters

from conftest import copy_photos, with_exif


def utc(*args) -> float:
    return datetime.datetime(*args, tzinfo=datetime.timezone.utc).timestamp()


def test_inline_filters_are_split_from_the_words():
    words, f = split_filters(
        'a dog on a beach after:2023-06 before:2024 camera:"canon eos" folder:holidays type:JPG'
    )
    assert words == "a dog on a beach"
    assert (f.after, f.before) == (utc(2023, 6, 1), utc(2024, 1, 1))
    assert (f.camera, f.folder, f.type) == ("canon eos", "holidays", "jpg")
    assert split_filters("2:red car -blurry") == ("2:red car -blurry", Filters())  # weights stay words
    assert split_filters("http://example.com/cat.jpg")[0] == "http://example.com/cat.jpg"
    assert split_filters("cat: cute")[0] == "cat: cute"
    with pytest.raises(QueryError, match="colour: is not a filter"):
        split_filters("a car colour:red")
    with pytest.raises(QueryError, match="YYYY-MM"):
        split_filters("after:last-week")


def test_metadata_from_the_header(tmp_path, photos):
    src = next(photos.rglob("chelsea.png"))
    path = with_exif(
        src,
        tmp_path / "a.jpg",
        "Canon",
        "Canon EOS 80D",
        "2023:06:14 18:30:05",
        "+02:00",
        ("S", (33.0, 51.0, 54.0), "W", (70.0, 39.0, 0.0)),
    )
    meta = read_metadata(path)
    assert meta.taken_source == "exif" and meta.taken_at == utc(2023, 6, 14, 16, 30, 5)  # +02:00 -> UTC
    assert meta.taken_offset == 120 and meta.orientation is None  # none written
    assert meta.camera == "Canon EOS 80D"  # not "Canon Canon EOS 80D"
    assert meta.latitude == pytest.approx(-33.865) and meta.longitude == pytest.approx(-70.65)
    plain = read_metadata(src)  # a PNG without EXIF: its file time, marked so
    assert plain.taken_source == "file" and plain.taken_at == pytest.approx(src.stat().st_mtime)
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone held upright: shown turned a quarter
    Image.open(src).convert("RGB").save(tmp_path / "turned.jpg", exif=exif)
    assert read_metadata(tmp_path / "turned.jpg").orientation == 6
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert read_metadata(bad).taken_source == "file"  # never raises


def test_filtered_search_in_every_form(tmp_path, photos, tiny_spec):
    folder = copy_photos(photos, tmp_path / "pics", ["coffee.png"])
    with_exif(
        next(photos.rglob("chelsea.png")), folder / "cat.jpg", "Canon", "EOS 80D", "2023:07:01 10:00:00"
    )
    with_exif(
        next(photos.rglob("rocket.jpg")),
        folder / "holidays" / "launch.jpg",
        "NIKON",
        "D750",
        "2021:03:02 08:00:00",
    )
    with Engine.open(tmp_path / "db", model=tiny_spec, workers=0) as eng:
        eng.index(folder, progress=False)

        def names(*args, **kw):
            return sorted(h.path.rsplit("/", 1)[1] for h in eng.search(*args, k=10, **kw).hits)

        assert names("a photo after:2023") == ["cat.jpg", "coffee.png"]  # coffee.png: its file time
        assert names("a photo before:2022") == ["launch.jpg"]
        assert names("a photo camera:nikon") == ["launch.jpg"]
        assert names(["a photo", "folder:holidays"]) == ["launch.jpg"]  # CLI words, one a filter
        assert names("a photo", filters={"type": "png"}) == ["coffee.png"]
        assert names("a photo", filters={"camera": "canon", "type": "jpg"}) == ["cat.jpg"]
        none = eng.search("a photo camera:leica")
        assert none.hits == [] and "no image passes the filters" in none.message
        with pytest.raises(QueryError, match="unknown album"):
            eng.search("a photo", filters={"album": "Paris"})
        info = eng.image_info(folder / "cat.jpg")
        assert info["camera"] == "Canon EOS 80D" and info["taken_source"] == "exif"

        # an index from before these fields: the next index run reads the headers only
        eng.store.catalog.conn.execute("UPDATE images SET taken_source=NULL, camera=NULL")
        eng.store.catalog.conn.commit()
        assert "no date or camera read yet" in eng.search("a photo camera:canon").message
        report = eng.index(folder, progress=False)
        assert report.embedded == 0 and names("a photo camera:canon") == ["cat.jpg"]


@pytest.mark.slow
def test_cli_filter_flags(tmp_path, photos, tiny_spec):
    folder = copy_photos(photos, tmp_path / "pics", ["coffee.png"])
    with_exif(
        next(photos.rglob("chelsea.png")),
        folder / "cat.jpg",
        "Canon",
        "EOS 80D",
        "2023:07:01 10:00:00",
        "-05:30",
    )
    run = [sys.executable, "-m", "viewfinder"]
    db = str(tmp_path / "db")
    subprocess.run(run + ["index", str(folder), "--db", db, "--model", tiny_spec], check=True)
    out = subprocess.run(
        run + ["search", "a photo", "--db", db, "--camera", "canon", "-f"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("cat.jpg")
    show = subprocess.run(run + ["show", str(folder / "cat.jpg"), "--db", db], capture_output=True, text=True)
    assert "taken_at: 2023-07-01 10:00:00-05:30" in show.stdout  # as the camera's clock showed it
    bad = subprocess.run(
        run + ["search", "a photo", "--db", db, "--after", "soon"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "YYYY" in bad.stderr


def test_place_filters_are_parsed():
    words, f = split_filters('a dog near:"48.85, 2.35" within:500m place:"Paris, France"')
    assert words == "a dog" and f.near == (48.85, 2.35) and f.within_km() == pytest.approx(0.5)
    assert f.place_parts() == ["Paris", "France"]
    assert split_filters("near:1,2")[1].within_km() == 10.0  # the default
    assert split_filters("near:1,2 within:3mi")[1].within == pytest.approx(4.828, abs=1e-3)
    with pytest.raises(QueryError, match="latitude,longitude"):
        split_filters("near:91,0")
    with pytest.raises(QueryError, match="20km, 500m or 3mi"):
        split_filters("near:1,2 within:far")
    with pytest.raises(QueryError, match="within: needs a point"):
        split_filters("a dog within:2km")[1].checked()


# (latitude, longitude) as the EXIF GPS fields write them
PARIS = ("N", (48.0, 51.0, 24.0), "E", (2.0, 21.0, 8.0))  # 48.8567, 2.3522
LAMBETH = ("N", (51.0, 30.0, 0.0), "W", (0.0, 7.0, 12.0))  # 51.5, -0.12: London
AT_SEA = ("N", (0.0, 0.0, 0.0), "W", (30.0, 0.0, 0.0))  # the Atlantic, 500 km from any town


def test_places_from_gps_offline(tmp_path, photos, tiny_spec):
    folder = tmp_path / "pics"
    src = next(photos.rglob("chelsea.png"))
    for name, gps in (("paris.jpg", PARIS), ("lambeth.jpg", LAMBETH), ("sea.jpg", AT_SEA)):
        with_exif(src, folder / name, "Canon", "EOS 80D", "2023:07:01 10:00:00", gps=gps)
    with_exif(src, folder / "nogps.jpg", "Canon", "EOS 80D", "2023:07:01 10:00:00")
    with Engine.open(tmp_path / "db", model=tiny_spec, workers=0) as eng:
        eng.index(folder, progress=False)

        def names(query):
            return sorted(h.path.rsplit("/", 1)[1] for h in eng.search(query, k=10).hits)

        assert names("a cat place:France") == ["paris.jpg"]
        assert names("a cat place:île-de-france") == names("a cat place:ILE-DE-FRANCE") == ["paris.jpg"]
        assert names('a cat place:"Paris, FR"') == ["paris.jpg"]
        assert names('a cat place:"Paris, United Kingdom"') == []
        assert names("a cat place:London") == ["lambeth.jpg"]  # the big city around Lambeth
        assert names("a cat near:48.85,2.35 within:2km") == ["paris.jpg"]
        assert names("a cat near:48.85,2.35 within:300km") == ["paris.jpg"]
        assert names("a cat near:48.85,2.35 within:400km") == ["lambeth.jpg", "paris.jpg"]  # 343 km
        assert names("a cat near:0,-30 within:1km") == ["sea.jpg"]  # no town, but its coordinates
        info = eng.image_info(folder / "lambeth.jpg")
        assert (info["city"], info["metro"], info["country_code"]) == ("Lambeth", "London", "GB")
        assert "city" not in eng.image_info(folder / "sea.jpg")  # no place rather than a wrong one

        # an index from before place names: the next run looks them up from the stored coordinates
        eng.store.catalog.conn.execute("UPDATE images SET city=NULL, place_names=NULL, place_source=NULL")
        assert names("a cat place:France") == []
        report = eng.index(folder, progress=False)
        assert report.embedded == 0 and names("a cat place:France") == ["paris.jpg"]


def test_place_without_the_place_data_says_what_to_install(tmp_path, photos, tiny_spec, monkeypatch):
    monkeypatch.setattr(places, "available", lambda: False)
    folder = copy_photos(photos, tmp_path / "pics", ["coffee.png"])
    with Engine.open(tmp_path / "db", model=tiny_spec, workers=0) as eng:
        eng.index(folder, progress=False)  # indexing goes on without place names
        with pytest.raises(QueryError, match=r"viewfinder\[places\]"):
            eng.search("a cat place:Paris")
        assert eng.search("a cat near:1,2").hits == []  # coordinates need no place data
