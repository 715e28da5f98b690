"""Duplicates: the grouping itself, then the real engine, CLI and API on real photos with mini: an
exact copy, a re-encoded and resized copy, and a photo of something else."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from viewfinder.query.duplicates import exact_groups, linked_groups

from conftest import copy_photos


def _unit(rows) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_links_join_through_chains_and_keep_the_weakest_link():
    # a ~ b (0.99), b ~ c (0.96), a ~ c lower; d far from all
    a = [1.0, 0.0, 0.0]
    b = [0.99, 0.141, 0.0]
    c = [0.91, 0.41, 0.0]
    d = [0.0, 0.0, 1.0]
    vecs = _unit([a, b, c, d])
    groups = linked_groups(np.array([10, 11, 12, 13]), vecs, 0.95)
    assert len(groups) == 1
    members, weakest = groups[0]
    assert sorted(members) == [10, 11, 12]
    assert weakest == pytest.approx(float(vecs[1] @ vecs[2]), abs=1e-5) and weakest >= 0.95
    assert linked_groups(np.array([10, 11, 12, 13]), vecs, 0.999) == []


def test_exact_groups_are_shared_hashes():
    assert exact_groups([(1, "h1"), (2, "h2"), (3, "h1"), (4, "h1"), (5, "h2"), (6, "h3")]) == [
        [1, 3, 4],
        [2, 5],
    ]


@pytest.fixture(scope="module")
def dup_index(tmp_path_factory, photos):
    base = tmp_path_factory.mktemp("dups")
    folder = copy_photos(photos, base / "pics", ["chelsea.png", "rocket.jpg", "coffee.png"])
    shutil.copy2(folder / "chelsea.png", folder / "chelsea copy.png")  # same bytes
    im = Image.open(folder / "rocket.jpg").convert("RGB")
    im.resize((im.width // 2, im.height // 2)).save(folder / "rocket-small.jpg", quality=60)
    db = base / "db"
    env = {**os.environ, "VIEWFINDER_RUNTIME": "onnx"}
    out = subprocess.run(
        [sys.executable, "-m", "viewfinder", "index", str(folder), "--db", str(db), "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return db, folder


def _duplicates(db, *args):
    out = subprocess.run(
        [sys.executable, "-m", "viewfinder", "duplicates", "--db", str(db), "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return [sorted(os.path.basename(i["path"]) for i in g["images"]) for g in json.loads(out.stdout)]


@pytest.mark.slow
def test_duplicates_at_each_level_on_real_photos(dup_index):
    db, _ = dup_index
    assert _duplicates(db, "--level", "exact") == [["chelsea copy.png", "chelsea.png"]]
    near = _duplicates(db, "--level", "near")
    assert sorted(near) == [["chelsea copy.png", "chelsea.png"], ["rocket-small.jpg", "rocket.jpg"]]
    assert _duplicates(db, "--level", "near", "--threshold", "0.9999") == [
        ["chelsea copy.png", "chelsea.png"]
    ]
    bad = subprocess.run(
        [sys.executable, "-m", "viewfinder", "duplicates", "--db", str(db), "--level", "twins"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "level 'twins': use one of exact, near, similar" in bad.stderr


@pytest.mark.slow
def test_duplicates_over_the_api(dup_index):
    from fastapi.testclient import TestClient

    from viewfinder.api import create_app
    from viewfinder.config import load_config

    db, _ = dup_index
    with TestClient(create_app(load_config(db=db))) as client:
        groups = client.get("/duplicates", params={"level": "near"}).json()
        assert {len(g["images"]) for g in groups} == {2} and len(groups) == 2
        assert all(g["threshold"] == 0.94 and g["score"] >= 0.94 for g in groups)
        assert all(
            i["thumbnail_url"].startswith("/thumbnails/") and "/" not in i["path"]
            for g in groups
            for i in g["images"]
        )
        assert client.get("/duplicates", params={"threshold": 2}).status_code == 422
        assert client.get("/duplicates", params={"level": "twins"}).status_code == 422


@pytest.mark.slow
def test_image_search_names_near_duplicates(dup_index):
    """An image query's hits say which are the same picture (the resized copy) and which are
    merely similar (another photo), in the JSON and in the explanation."""
    db, folder = dup_index
    out = subprocess.run(
        [sys.executable, "-m", "viewfinder", "search", str(folder / "rocket.jpg"), "--db", str(db)]
        + ["--json", "-k", "5"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    hits = {os.path.basename(h["path"]): h for h in json.loads(out.stdout)}
    assert hits["rocket-small.jpg"]["likeness"] == "near-duplicate"
    assert "near-duplicate (cosine >= 0.94)" in hits["rocket-small.jpg"]["explanation"]
    assert hits["coffee.png"]["likeness"] is None
    text = subprocess.run(
        [sys.executable, "-m", "viewfinder", "search", "a rocket", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    text_hits = json.loads(text.stdout)
    assert text_hits and all(h["likeness"] is None for h in text_hits)  # text queries: none
