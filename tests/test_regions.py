"""Region heatmaps: the occlusion logic against an encoder whose answer is known, and the real
CLI writing overlays with a real model."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from viewfinder.query.regions import Heatmap, grid_shape, overlay, region_heatmap

from conftest import copy_photos


class RedShare:
    """An 'encoder' whose image vector says how much of the image is pure red."""

    def encode_images(self, images):
        out = []
        for im in images:
            a = np.asarray(im.convert("RGB"), np.int16)
            red = ((a[..., 0] > 200) & (a[..., 1] < 50) & (a[..., 2] < 50)).mean()
            out.append([red, 1 - red])
        v = np.array(out, np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_peak_is_where_the_matching_thing_is():
    image = Image.new("RGB", (320, 200), (90, 140, 60))
    image.paste((255, 0, 0), (240, 140, 300, 190))  # a red patch in the lower right
    heat = region_heatmap(RedShare(), image, np.array([1.0, 0.0], np.float32), cells=8)
    assert (heat.rows, heat.cols) == grid_shape(320, 200, 8) == (5, 8)
    x, y = heat.peak()
    assert 240 <= x * 320 <= 300 and 140 <= y * 200 <= 190
    assert heat.summary() == "strongest in the lower right"
    assert heat.values.min() == 0.0 and heat.values.max() == 1.0
    lit = np.asarray(overlay(image, heat), np.int16)
    # the matching corner keeps its light, the far corner is dimmed
    assert lit[170, 270].sum() > np.asarray(image, np.int16)[170, 270].sum() * 0.6
    assert lit[10, 10].sum() < np.asarray(image, np.int16)[10, 10].sum() * 0.6


def test_summary_words():
    def at(r, c, rows=3, cols=3):
        v = np.zeros((rows, cols))
        v[r, c] = 1
        return Heatmap(v).summary()

    assert at(0, 0) == "strongest in the upper left"
    assert at(1, 1) == "strongest in the centre"
    assert at(1, 2) == "strongest on the right"
    assert at(2, 1) == "strongest at the bottom"
    assert at(0, 2) == "strongest in the upper right"


@pytest.mark.slow
def test_cli_explain_writes_overlays(tmp_path, photos, tiny_spec):
    folder = copy_photos(photos, tmp_path / "pics", ["chelsea.png", "rocket.jpg", "coffee.png"])
    run = [sys.executable, "-m", "viewfinder"]
    db = str(tmp_path / "db")
    subprocess.run(run + ["index", str(folder), "--db", db, "--model", tiny_spec], check=True)
    out = subprocess.run(
        run + ["search", "a cat", "--db", db, "-k", "2", "--json", "--explain", str(tmp_path / "why")],
        check=True,
        capture_output=True,
        text=True,
    )
    hits = json.loads(out.stdout)
    assert all(h["heatmap"]["rows"] >= 1 for h in hits)
    written = sorted(p.name for p in (tmp_path / "why").iterdir())
    assert len(written) == 2 and written[0].startswith("01-")
    assert Image.open(tmp_path / "why" / written[0]).format == "PNG"
