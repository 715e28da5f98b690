"""Rough edges a new user hits in the CLI, each found by trying it (tiny model, real CLI)."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import copy_photos, ctrl_c_works

pytestmark = pytest.mark.slow


def vf(*args):
    return subprocess.run(
        [sys.executable, "-m", "viewfinder", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "60"},
    )


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, photos, tiny_spec):
    base = tmp_path_factory.mktemp("edges")
    folder = copy_photos(
        photos, base / "a-rather-long-folder-name" / "and-another-one", ["rocket.jpg", "coffee.png"]
    )
    db = base / "db"
    assert vf("index", folder, "--db", db, "--model", tiny_spec, "-q").returncode == 0
    return db, folder


def test_mistyped_option_is_an_error_not_a_query_word(small_index):
    db, _ = small_index
    out = vf("search", "a red apple", "--jsn", "--db", db)
    assert out.returncode == 2 and "--jsn: no such option" in out.stderr
    assert vf("search", "a rocket", "-blurry", "--db", db).returncode == 0  # negative parts still work


def test_search_and_stats_on_a_missing_index_create_nothing(tmp_path):
    for args in (("search", "a cat"), ("stats",), ("caption",)):
        out = vf(*args, "--db", tmp_path / "nowhere")
        assert out.returncode == 2 and "no index here" in out.stderr, out.stderr
    assert not (tmp_path / "nowhere").exists()


def test_paths_for_pipes_and_a_table_that_keeps_file_names(small_index):
    db, folder = small_index
    bare = vf("search", "a rocket", "--db", db, "-f").stdout.splitlines()
    assert sorted(bare) == sorted(str(p) for p in folder.iterdir())
    table = vf("search", "a rocket", "--db", db).stdout  # not a terminal: no box drawing, 60 columns
    assert "rocket.jpg" in table and "coffee.png" in table and "…" in table
    assert not set("┏┃━│└") & set(table)


def test_version():
    out = vf("--version")
    assert out.returncode == 0 and out.stdout.startswith("viewfinder ")


def test_unknown_model_is_one_short_line_and_creates_nothing(tmp_path, photos):
    folder = copy_photos(photos, tmp_path / "pics", ["rocket.jpg"])
    out = vf("index", folder, "--db", tmp_path / "db", "--model", "open_clip:ViT-B-33", "-q")
    assert out.returncode == 2 and len(out.stderr) < 400, out.stderr
    assert "ViT-B-32" in out.stderr  # a close match
    assert not (tmp_path / "db").exists()


def test_query_that_looks_like_a_missing_file_says_so(small_index):
    db, _ = small_index
    out = vf("search", "holiday/missing.jpg", "--db", db)
    assert out.returncode == 2 and "no such image file" in out.stderr
    assert vf("search", "holiday/missing.jpg", "--as-text", "--db", db).returncode == 0
    assert vf("search", "AC/DC", "--db", db).returncode == 0  # words with a slash are still words


def test_ctrl_c_during_index_says_what_is_kept(tmp_path, photos, tiny_spec):
    folder = tmp_path / "pics"
    for i in range(8):
        copy_photos(photos, folder / f"set{i}")
    db = tmp_path / "db"
    cmd = [sys.executable, "-m", "viewfinder", "index", str(folder), "--db", str(db), "--model", tiny_spec]
    proc = subprocess.Popen(
        [*cmd, "--batch-size", "1", "--workers", "1", "-q"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_works,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if (
                sqlite3.connect(db / "catalog.sqlite")
                .execute("SELECT COUNT(*) FROM image_vectors")
                .fetchone()[0]
            ):
                break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    kept = int(err.split(" holds ")[1].split()[0])
    assert kept >= 1 and "run the same command" in err
    again = vf("index", folder, "--db", db, "-q")
    assert again.returncode == 0 and f"{kept} unchanged" in again.stdout


def test_show_an_image_by_id_or_path(small_index):
    import json

    db, folder = small_index
    out = vf("show", folder / "rocket.jpg", "--db", db, "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert (
        info["path"].endswith("rocket.jpg")
        and info["width"] > 0
        and info["content_hash"].startswith("blake3:")
    )
    by_id = vf("show", info["id"], "--db", db)
    assert by_id.returncode == 0 and "rocket.jpg" in by_id.stdout and "indexed_at: 20" in by_id.stdout
    missing = vf("show", "999999", "--db", db)
    assert missing.returncode != 0 and "image id 999999 is not in the catalogue" in missing.stderr
    elsewhere = vf("show", folder / "nope.jpg", "--db", db)
    assert elsewhere.returncode != 0 and "nope.jpg: not in this index" in elsewhere.stderr


def test_config_says_where_each_setting_comes_from(tmp_path):
    """Default, the XDG settings file, an environment variable and a flag, each named."""
    import json

    xdg = tmp_path / "xdg"
    (xdg / "viewfinder").mkdir(parents=True)
    (xdg / "viewfinder" / "config.toml").write_text('workers = 3\nsearch_mode = "fused"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIEWFINDER_")}
    env.update(XDG_CONFIG_HOME=str(xdg), VIEWFINDER_DEVICE="cpu")
    out = subprocess.run(
        [sys.executable, "-m", "viewfinder", "config", "--db", str(tmp_path / "db"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows["workers"] == {"value": "3", "from": str(xdg / "viewfinder" / "config.toml")}
    assert rows["search_mode"]["value"] == "fused"
    assert rows["device"] == {"value": "cpu", "from": "$VIEWFINDER_DEVICE"}
    assert rows["db"]["from"] == "argument" and rows["index_kind"]["from"] == "default"
    assert not (tmp_path / "db").exists()  # looking at the settings creates nothing


def test_flags_show_no_type_in_help():
    out = subprocess.run(
        [sys.executable, "-m", "viewfinder", "index", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
        timeout=120,
    )
    lines = [
        line for line in out.stdout.splitlines() if any(f in line for f in ("--caption", "--quiet", "--help"))
    ]
    assert len(lines) == 3 and not any("<bool>" in line for line in lines), lines
    assert any("<int>" in line for line in out.stdout.splitlines() if "--workers" in line)
