"""End to end: the real CLI, in a subprocess, with the real `mini` model, on real photos."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import copy_photos

pytestmark = pytest.mark.slow


def vf(*args, env=None, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "viewfinder", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"viewfinder {args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, photos):
    db = tmp_path_factory.mktemp("cli") / "db"
    out = vf("index", photos, "--db", db, "--workers", 1, "--quiet")
    return db, photos, out


def test_index_reports_counts(indexed):
    db, photos, out = indexed
    n = len([p for p in photos.rglob("*") if p.is_file()])
    assert f"{n} files: {n} embedded" in out.stdout
    stats = json.loads(vf("stats", "--db", db, "--json").stdout)
    assert stats["images"] == n and stats["model"] == "mini" and stats["dim"] > 0


def test_text_image_and_hybrid_search(indexed):
    db, photos, _ = indexed
    hits = json.loads(vf("search", "a cat", "--db", db, "-k", 5, "--json").stdout)
    assert len(hits) == 5 and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert {"score", "confidence", "abstain", "contributions", "explanation", "path"} <= set(hits[0])
    assert hits[0]["score"] >= hits[-1]["score"]
    aloe = next(photos.rglob("aloeL.jpg"))
    same = json.loads(vf("search", aloe, "--db", db, "-k", 2, "--json").stdout)
    assert same[0]["path"] == str(aloe) and same[0]["score"] > 0.99
    assert same[1]["path"].endswith("aloeR.jpg")  # the real near-duplicate view comes next
    hybrid = json.loads(
        vf("search", "yellow flower", "--image", aloe, "--text-weight", 0.5, "--db", db, "--json").stdout
    )
    assert set(hybrid[0]["contributions"]) == {"yellow flower", "aloeL.jpg"}
    table = vf("search", "2:a cat", "-a dog", "--db", db, "-k", 3).stdout
    assert "rank" in table and "confidence" in table


def test_texts_add_and_image_to_text(indexed, tmp_path):
    db, photos, _ = indexed
    labels = tmp_path / "labels.txt"
    labels.write_text("a cat\na rocket on the launch pad\na bowl of fruit\n\n")
    assert "3 new texts" in vf("texts", "add", labels, "--db", db).stdout
    hits = json.loads(vf("search", next(photos.rglob("chelsea.png")), "--texts", "--db", db, "--json").stdout)
    assert {h["text"] for h in hits} == {"a cat", "a rocket on the launch pad", "a bowl of fruit"}


def test_errors_are_one_line(indexed, tmp_path):
    db, _, _ = indexed
    for args in (
        ["index", tmp_path / "missing", "--db", db],
        ["search", "cat", "--db", db, "--model", "hf:/nope"],
        ["search", "cat", "--image", "/nope.png", "--db", db],
        ["texts", "add", tmp_path / "none.txt", "--db", db],
    ):
        proc = vf(*args, check=False)
        assert proc.returncode != 0, args
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_kill_during_indexing_then_resume(tmp_path, photos):
    folder = tmp_path / "many"
    for i in range(3):  # three copies of the sample under different names
        copy_photos(photos, folder / f"set{i}")
    total = len(list(folder.rglob("*.*")))
    db = tmp_path / "db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "viewfinder",
            "index",
            str(folder),
            "--db",
            str(db),
            "--batch-size",
            "2",
            "--workers",
            "1",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    catalog = db / "catalog.sqlite"
    deadline = time.time() + 300
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if catalog.exists():
            try:
                done = sqlite3.connect(catalog).execute("SELECT COUNT(*) FROM image_vectors").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 6:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 6 <= done < total, "the kill must land in the middle of the run"
    partial = json.loads(vf("stats", "--db", db, "--json").stdout)["images"]
    assert 6 <= partial < total
    assert len(json.loads(vf("search", "a cat", "--db", db, "-k", 3, "--json").stdout)) == 3
    out = vf("index", folder, "--db", db, "--quiet").stdout
    assert f"{total} files: {total - partial} embedded, {partial} unchanged" in out
    conn = sqlite3.connect(catalog)
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM images").fetchone() == (total, total)
    assert json.loads(vf("stats", "--db", db, "--json").stdout)["images"] == total


def test_global_verbose_and_quiet(indexed, tmp_path):
    db, photos, _ = indexed
    loud = vf("-v", "search", "a cat", "--db", db, "-k", "1")
    assert "INFO: model mini ready on cpu" in loud.stderr  # log lines at -v
    quiet = vf("-q", "index", photos, "--db", db)
    assert quiet.stderr == "" and "unchanged" in quiet.stdout  # no bar, no warnings; the result stays


@pytest.mark.slow
def test_eval_shows_progress_and_writes_a_report(tmp_path, tiny_spec):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "viewfinder",
            "eval",
            "emoji",
            "--model",
            tiny_spec,
            "--report",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "text_to_image" in out.stdout and "image_to_text" in out.stdout and "MRR" in out.stdout
    assert "embedding" in out.stderr and "img" in out.stderr  # the progress bar, on stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert metrics["pairs"] > 100 and 0 < metrics["text_to_image"]["MRR"] <= 1
    assert {"recall_at_k.png", "reliability.png"} <= {p.name for p in tmp_path.iterdir()}
    quiet = subprocess.run(
        [sys.executable, "-m", "viewfinder", "-q", "eval", "emoji", "--model", tiny_spec, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "embedding" not in quiet.stderr and json.loads(quiet.stdout)["pairs"] == metrics["pairs"]
