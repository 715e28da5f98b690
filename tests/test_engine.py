"""The engine as a library, with a tiny random open_clip model (fast) on real photos."""

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from viewfinder import Engine
from viewfinder.errors import ModelMismatchError

from conftest import copy_photos

SOME = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "horse.png", "coins.png"]


@pytest.fixture()
def folder(tmp_path, photos):
    return copy_photos(photos, tmp_path / "pics", SOME)


def _open(tmp_path, spec, **kw):
    return Engine.open(tmp_path / "db", model=spec, workers=0, batch_size=4, **kw)


def test_index_then_search_all_query_kinds(tmp_path, folder, tiny_spec):
    with _open(tmp_path, tiny_spec) as eng:
        rep = eng.index(folder, progress=False)
        assert (rep.scanned, rep.embedded, rep.failed) == (6, 6, [])
        res = eng.search(str(folder / "chelsea.png"), k=3)
        assert res.hits[0].path == str(folder / "chelsea.png")
        assert res.hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.rank for h in res.hits] == [1, 2, 3]
        text = eng.search(["2:a cat", "-a rocket"], k=6)
        assert len(text.hits) == 6
        for h in text.hits:
            assert sum(h.contributions.values()) == pytest.approx(h.score, abs=1e-4)
            assert 0.0 <= h.confidence <= 1.0
        hybrid = eng.search("a cat", image=str(folder / "rocket.jpg"), text_weight=0.3, k=2)
        assert set(hybrid.hits[0].contributions) == {"a cat", "rocket.jpg"}
        page2 = eng.search("a cat", k=2, offset=2)
        assert [h.rank for h in page2.hits] == [3, 4]
        assert [h.id for h in page2.hits] == [h.id for h in eng.search("a cat", k=4).hits[2:]]


def test_incremental_reindex_add_change_delete_rename(tmp_path, folder, photos, tiny_spec):
    with _open(tmp_path, tiny_spec) as eng:
        eng.index(folder, progress=False)
        ids_before = {h.path: h.id for h in eng.search("x", k=10).hits}
        again = eng.index(folder, progress=False)
        assert (again.embedded, again.unchanged) == (0, 6)

        shutil.copy2(next(photos.rglob("fruits.jpg")), folder / "fruits.jpg")  # added
        (folder / "coins.png").unlink()  # deleted
        os.rename(folder / "horse.png", folder / "pony.png")  # renamed: same bytes
        shutil.copy2(next(photos.rglob("moon.png")), folder / "coffee.png")  # changed content
        new_mtime = time.time() + 5
        os.utime(folder / "rocket.jpg", (new_mtime, new_mtime))  # touched only
        rep = eng.index(folder, progress=False)
        assert (rep.embedded, rep.moved, rep.deleted, rep.unchanged) == (2, 2, 1, 2)
        after = {h.path: h.id for h in eng.search("x", k=10).hits}
        assert len(after) == 6 and str(folder / "coins.png") not in after
        assert after[str(folder / "pony.png")] == ids_before[str(folder / "horse.png")]
        assert after[str(folder / "rocket.jpg")] == ids_before[str(folder / "rocket.jpg")]
        moon = eng.search(str(folder / "coffee.png"), k=1).hits[0]
        assert moon.path == str(folder / "coffee.png") and moon.score == pytest.approx(1.0, abs=1e-4)


def test_renames_are_found_by_the_sha256_hashes_of_older_catalogues(tmp_path, folder, tiny_spec):
    """Catalogues from before BLAKE3 hold SHA-256 hashes: a file renamed or touched since is
    checked against them with SHA-256, and keeps its vector; new rows get BLAKE3."""
    import hashlib

    with _open(tmp_path, tiny_spec) as eng:
        eng.index(folder, progress=False)
        conn = eng.store.catalog.conn
        for image_id, path in conn.execute("SELECT id, path FROM images").fetchall():
            old = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            conn.execute("UPDATE images SET content_hash=? WHERE id=?", (old, image_id))
        conn.commit()
        ids_before = {h.path: h.id for h in eng.search("x", k=10).hits}
        os.rename(folder / "horse.png", folder / "pony.png")
        later = time.time() + 5
        os.utime(folder / "rocket.jpg", (later, later))
        rep = eng.index(folder, progress=False)
        assert (rep.embedded, rep.moved) == (0, 2)
        after = {h.path: h.id for h in eng.search("x", k=10).hits}
        assert after[str(folder / "pony.png")] == ids_before[str(folder / "horse.png")]
        assert after[str(folder / "rocket.jpg")] == ids_before[str(folder / "rocket.jpg")]
        shutil.copy2(folder / "chelsea.png", folder / "chelsea copy.png")
        eng.index(folder, progress=False)
        (stored,) = conn.execute(
            "SELECT content_hash FROM images WHERE path=?", (str(folder / "chelsea copy.png"),)
        ).fetchone()
        assert stored.startswith("blake3:")


def test_bad_files_are_recorded_and_do_not_stop_the_run(tmp_path, folder, tiny_spec):
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image")
    good = (folder / "chelsea.png").read_bytes()
    (folder / "half.png").write_bytes(good[: len(good) // 3])
    seen = []
    with _open(tmp_path, tiny_spec, max_pixels=50_000_000) as eng:
        rep = eng.index(folder, progress=False, on_error=seen.append)
        assert rep.embedded == 6 and len(rep.failed) == 3 and len(seen) == 3
        reasons = " | ".join(seen)
        assert "empty file" in reasons and "not an image" in reasons and "truncated or corrupt" in reasons
        assert all("\n" not in line for line in seen)
        assert eng.stats()["failed"] == 3
        assert eng.index(folder, progress=False).failed == []  # unchanged bad files are not retried


def test_other_model_on_same_index_is_an_error(tmp_path, folder, tiny_spec):
    with _open(tmp_path, tiny_spec) as eng:
        eng.index(folder, progress=False)
    with pytest.raises(ModelMismatchError, match="built with model"):
        _open(tmp_path, "mini")
    with Engine.open(tmp_path / "db", workers=0) as eng:  # no --model: the stored one is used
        assert eng.model_spec == tiny_spec


def test_image_to_text(tmp_path, folder, tiny_spec):
    with _open(tmp_path, tiny_spec) as eng:
        assert eng.add_texts(["a cat", "a rocket", "a cat", "  "]) == 2
        res = eng.image_to_text(str(folder / "chelsea.png"), k=2)
        assert {h.text for h in res.hits} == {"a cat", "a rocket"}
        want = (
            eng.encode_texts(["a cat", "a rocket"])
            @ eng.encode_images([__import__("PIL.Image").Image.open(folder / "chelsea.png")])[0]
        )
        assert res.hits[0].score == pytest.approx(float(np.max(want)), abs=1e-5)


def test_in_order_writer_keeps_order_and_raises_its_error_at_the_end():
    from viewfinder.ingest.pipeline import InOrderWriter

    written = []

    def write(n):
        if n == 3:
            raise OSError("disk full")
        written.append(n)

    with pytest.raises(OSError, match="disk full"):
        with InOrderWriter(write) as writer:
            for n in range(3):
                writer.put(n)
            writer.put(3)
    assert written == [0, 1, 2]


def test_compile_option_compiles_the_image_tower_once(tmp_path, folder, tiny_spec, monkeypatch):
    import torch

    compiled = []

    def fake_compile(fn, **kw):  # the wiring, without paying inductor's compile time on CPU
        compiled.append(fn)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    with _open(tmp_path, tiny_spec) as eng:
        eng.index(folder, progress=False)
    assert compiled == []
    with _open(tmp_path, tiny_spec, compile=True) as eng:
        assert len(eng.search("a cat", k=3).hits) == 3
        assert len(compiled) == 1 and compiled[0].__name__ == "_image_features"


def test_reindex_moves_to_another_model_keeping_texts_and_captions(tmp_path, folder, tiny_spec, tiny_hf_dir):
    from viewfinder.ingest.reindex import next_folder, previous_folder

    hf = f"hf:{tiny_hf_dir}"
    with _open(tmp_path, tiny_spec) as eng:
        eng.index(folder, progress=False)
        eng.add_texts(["a cat", "a rocket"])
        some = eng.search("a cat", k=1).hits[0].id
        eng.store.catalog.set_captions([(some, "a grey cat", None)], "test")
        before = eng.stats()
        rep = eng.reindex(hf, progress=False)
        assert (rep.embedded, rep.failed) == (6, [])
        after = eng.stats()
        assert (
            after["model"] == hf and after["images"] == before["images"] and after["texts"] == before["texts"]
        )
        assert eng.search(str(folder / "chelsea.png"), k=1).hits[0].path == str(folder / "chelsea.png")
        assert [h.caption for h in eng.search("grey", mode="lexical", k=3).hits] == ["a grey cat"]
        assert sorted(h.text for h in eng.search("a cat", target="texts", k=3).hits) == ["a cat", "a rocket"]
        # what the headers said comes along: date filters and browse work on the new index at once
        assert eng.image_info(folder / "chelsea.png")["taken_source"] == "file"
        assert eng.browse(limit=10)["total"] == 6 and len(eng.search("a cat after:1990", k=10).hits) == 6
    assert previous_folder(tmp_path / "db").is_dir() and not next_folder(tmp_path / "db").exists()
    with Engine.open(tmp_path / "db", workers=0) as reopened:  # the switch is on disk
        assert reopened.model_spec == hf and reopened.counts()["images"] == 6


def test_reindex_resumes_and_a_cut_switch_is_finished(tmp_path, folder, tiny_spec, tiny_hf_dir):
    from viewfinder.ingest.reindex import next_folder

    db, hf = tmp_path / "db", f"hf:{tiny_hf_dir}"
    with _open(tmp_path, tiny_spec) as eng:
        eng.index(folder, progress=False)
    with Engine.open(next_folder(db), model=hf, workers=0, batch_size=4) as partial:  # a run cut short
        partial.index(copy_photos(folder, tmp_path / "half", SOME[:3]), progress=False)
    # the half-done next index holds other paths: a re-index drops them and embeds the live ones
    with _open(tmp_path, tiny_spec) as eng:
        rep = eng.reindex(hf, progress=False)
        assert rep.embedded == 6 and eng.counts()["images"] == 6
    # a crash between the two renames: DB gone, DB.next complete -> opening finishes the switch
    db.rename(next_folder(db))
    with Engine.open(db, workers=0) as eng:
        assert eng.counts()["images"] == 6 and eng.model_spec == hf
