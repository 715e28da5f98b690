"""Regression tests for the defects found by trying bad input, races and abuse against the
engine, the CLI and the API (each test names the defect it covers)."""

import io
import json
import os
import subprocess
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from viewfinder import Engine
from viewfinder.api import create_app
from viewfinder.config import load_config
from viewfinder.errors import ImageTooLargeError, QueryError, shown_path
from viewfinder.images import decode_bytes

from chaos import kill_cycles, make_corpus
from conftest import copy_photos

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ODD_NAME = os.fsdecode(b"\xff\xfe.jpg")  # not valid UTF-8: os functions give surrogate escapes


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory, photos):
    """Real photos plus a file whose name is not UTF-8, a broken file and broken links."""
    folder = copy_photos(
        photos, tmp_path_factory.mktemp("odd") / "pics", ["chelsea.png", "coffee.png", "rocket.jpg"]
    )
    (folder / ODD_NAME).write_bytes((folder / "rocket.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes(b"<html>not an image</html>")
    (folder / "dangling.jpg").symlink_to(folder / "nowhere.jpg")
    (folder / "loop1.jpg").symlink_to(folder / "loop2.jpg")
    (folder / "loop2.jpg").symlink_to(folder / "loop1.jpg")
    return folder


@pytest.fixture(scope="module")
def client(tmp_path_factory, odd_folder, tiny_spec):
    base = tmp_path_factory.mktemp("api")
    cfg = load_config(
        db=base / "db", model=tiny_spec, workers=0, token=TOKEN, allowed_roots=(str(odd_folder),)
    )
    app = create_app(cfg)
    report = app.state.engine.index(odd_folder, progress=False, on_error=lambda _: None)
    with TestClient(app) as c:
        c.report = report
        yield c


def test_non_utf8_name_is_indexed_kept_and_shown_escaped(client, odd_folder):
    """Defect 1: a file name that is not UTF-8 aborted every index run of its folder."""
    engine = client.app.state.engine
    assert client.report.embedded == 4
    paths = set(engine.store.catalog.images_under(str(odd_folder)))
    assert str(odd_folder / ODD_NAME) in paths  # the exact name, losslessly
    again = engine.index(odd_folder, progress=False, on_error=lambda _: None)
    assert again.embedded == 0 and again.unchanged == 5  # 4 photos + the broken file's record
    r = client.post("/search", json={"query": "a rocket", "k": 10})
    assert r.status_code == 200
    shown = [h["path"] for h in r.json()["hits"]]
    assert "\\xff\\xfe.jpg" in shown  # escaped, and without the server's folders
    assert all(h["alt"] for h in r.json()["hits"])


def test_broken_links_are_reported(client, odd_folder):
    """Defect 6: dangling links and link loops were dropped without a word."""
    reasons = dict(client.report.failed)
    assert "which does not exist" in reasons[str(odd_folder / "dangling.jpg")]
    assert "symbolic link loop" in reasons[str(odd_folder / "loop1.jpg")]
    assert "not an image" in reasons[str(odd_folder / "broken.jpg")]


@pytest.mark.parametrize("route", ["/images", "/thumbnails"])
@pytest.mark.parametrize("image_id", ["9223372036854775808", "99999999999999999999999", "0", "-1"])
def test_image_ids_out_of_range_are_422(client, route, image_id):
    """Defect 2: ids past 64 bits gave a plain-text 500."""
    r = client.get(f"{route}/{image_id}")
    assert r.status_code == 422 and "image_id" in r.json()["error"]


def test_nul_in_folder_and_lone_surrogates_are_clear_errors(client):
    """Defect 3: a NUL in a folder and a lone surrogate in a text gave 500."""
    r = client.post("/index", json={"folder": "/allowed\u0000/x"}, headers=AUTH)
    assert r.status_code == 400 and "NUL" in r.json()["error"]
    lone = {"content-type": "application/json"}  # a JSON escape for a lone surrogate, as a client sent it
    r = client.post("/texts", content=b'{"texts": ["fine", "\\udcff"]}', headers={**AUTH, **lone})
    assert r.status_code == 400 and "texts[1]" in r.json()["error"]
    r = client.post("/search", content=b'{"query": "\\udcff cat"}', headers=lone)
    assert r.status_code == 422 and "surrogate" in r.json()["error"]  # refused by the JSON parser


@pytest.mark.parametrize("weight", ["NaN", "Infinity", "-Infinity", "1e39", "9" * 400, "101"])
def test_bad_weights_are_422(client, weight):
    """Defect 5: NaN, infinite or huge weights gave an empty 200."""
    body = '{"query": [{"text": "a cat", "weight": %s}]}' % weight
    r = client.post("/search", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "weight" in r.json()["error"]


def test_only_negative_list_query_is_422(client):
    r = client.post("/search", json={"query": [{"text": "a cat", "weight": -1}]})
    assert r.status_code == 422 and "negative" in r.json()["error"]
    with pytest.raises(QueryError, match="weight"):
        client.app.state.engine.search([{"text": "cat", "weight": float("nan")}])


def test_body_limits_and_content_type(client):
    """Defect 9: 40 MB JSON bodies and JSON sent as text/plain were accepted."""
    big = b'{"query": "' + b"a" * (20 << 20) + b'"}'
    r = client.post("/search", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "20 MB" in r.json()["error"]
    r = client.post("/search", content=b'{"query": "a cat"}', headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]


def test_openapi_refs_resolve_and_errors_are_documented(client):
    """Defect 8: an unresolvable $ref, undocumented 4xx responses and image bodies."""
    doc = client.get("/openapi.json").json()

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for v in node.values():
                yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref
    image = doc["paths"]["/images/{image_id}"]["get"]["responses"]
    assert {"404", "422"} <= set(image) and "image/*" in image["200"]["content"]
    assert "403" in doc["paths"]["/index"]["post"]["responses"]


def test_bomb_message_says_what_helps():
    """Defect 7: the message told users to raise max_pixels, which could not help past Pillow's
    own limit. Now max_pixels alone decides, so raising it does help."""
    buf = io.BytesIO()
    Image.new("L", (2, 2)).save(buf, "PNG")
    header = bytearray(buf.getvalue())  # a real PNG whose header will lie about its size
    header[16:24] = (30000).to_bytes(4, "big") * 2  # declares 30000 x 30000 = 900 Mpx
    header[29:33] = zlib.crc32(bytes(header[12:29])).to_bytes(4, "big")
    with pytest.raises(ImageTooLargeError, match="max-pixels"):
        decode_bytes(bytes(header), "huge.png", 89_478_485)
    with pytest.raises(Exception) as raised:  # past the limit check: it fails for want of data
        decode_bytes(bytes(header), "huge.png", 10**10)
    assert not isinstance(raised.value, ImageTooLargeError)


@pytest.mark.slow
def test_two_index_runs_at_once_on_a_new_db(tmp_path, photos, tiny_spec):
    """Defect 4: two index runs starting together on a new db: one died with 'table meta
    already exists'. Now the catalogue is made atomically and the second run waits."""
    folder = copy_photos(photos, tmp_path / "pics", ["chelsea.png", "coffee.png", "rocket.jpg", "horse.png"])
    db = tmp_path / "db"
    cmd = [
        sys.executable,
        "-m",
        "viewfinder",
        "index",
        *map(str, (folder, "--db", db, "--model", tiny_spec, "-q")),
    ]
    runs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in runs]
    for p, (_, err) in zip(runs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    assert sorted(int(out.split(" embedded")[0].split(": ")[-1]) for out, _ in outs) == [0, 4]
    with Engine.open(db, model=tiny_spec) as engine:
        assert engine.counts()["images"] == 4
        assert len(engine.store.vectors("images")) == 4


def _state_and_parent(stat: Path) -> tuple[str, int] | None:
    """(state letter, parent pid) from a /proc/PID/stat file; None when the process is gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc), zombies left out."""
    found = {int(stat.parent.name): _state_and_parent(stat) for stat in Path("/proc").glob("[0-9]*/stat")}
    return [child for child, sp in found.items() if sp is not None and sp[1] == pid and sp[0] != "Z"]


def _alive(pid: int) -> bool:
    sp = _state_and_parent(Path(f"/proc/{pid}/stat"))
    return sp is not None and sp[0] != "Z"


@pytest.mark.slow
def test_decode_workers_die_with_a_killed_parent(tmp_path, photos, tiny_spec):
    """Defect 10: after a kill -9 of `index`, decode workers outlived their parent for seconds."""
    folder = tmp_path / "pics"
    folder.mkdir()
    # large smooth PNGs: each takes a worker about a second to decode, so a worker that only
    # notices its parent's death between files is caught alive
    big = Image.linear_gradient("L").resize((8000, 6000)).convert("RGB")
    for i in range(8):
        big.save(folder / f"big{i}.png", compress_level=1)
    cmd = [sys.executable, "-m", "viewfinder", "index", str(folder), "--db", str(tmp_path / "db")]
    parent = subprocess.Popen(
        [*cmd, "--model", tiny_spec, "--workers", "2", "--batch-size", "1", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while len(_children(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(parent.pid)
    assert len(workers) >= 2, "the decode workers never started"
    parent.kill()
    parent.wait()
    time.sleep(0.3)
    assert not [w for w in workers if _alive(w)], "decode workers outlived their parent"


def test_catalogue_keeps_odd_names_exactly(tmp_path):
    """Defect 1, at the catalogue: the name comes back byte for byte."""
    from viewfinder.store import NewImage
    from viewfinder.store.catalog import ImageCatalog

    cat = ImageCatalog(tmp_path / "c.sqlite")
    cat.bind_model("m", 2, "f")
    odd = str(tmp_path / ODD_NAME)
    (image_id,) = cat.write_batch([NewImage(odd, 1, 1.0, "ab", 1, 1)], np.ones((1, 2), np.float32))
    assert cat.get_image(image_id).path == odd
    assert os.fsencode(next(iter(cat.images_under(str(tmp_path))))) == os.fsencode(odd)
    json.dumps(cat.get_image(image_id).path)  # JSON can carry it (escaped)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, photos, tiny_spec):
    """A server with a read token and a low rate limit."""
    base = tmp_path_factory.mktemp("guarded")
    folder = copy_photos(photos, base / "pics", ["chelsea.png", "coffee.png"])
    cfg = load_config(
        db=base / "db", model=tiny_spec, workers=0, token=TOKEN, read_token="r34d", rate_limit=30
    )
    app = create_app(cfg)
    app.state.engine.index(folder, progress=False)
    with TestClient(app) as c:
        c.folder = folder
        yield c


def test_read_token_guards_searches_images_and_page(guarded):
    assert guarded.post("/search", json={"query": "a cat"}).status_code == 401
    assert guarded.get("/images/1").status_code == 401
    assert guarded.get("/").status_code == 401
    assert guarded.get("/health").status_code == 200  # for load balancers: no photos in it
    read = {"Authorization": "Bearer r34d"}
    assert guarded.post("/search", json={"query": "a cat"}, headers=read).status_code == 200
    assert (
        guarded.post("/search", json={"query": "a cat"}, headers=AUTH).status_code == 200
    )  # write token too
    assert guarded.post("/texts", json={"texts": ["x"]}, headers=read).status_code == 401  # read is not write
    assert guarded.get("/?token=wrong").status_code == 401
    page = guarded.get("/?token=r34d")  # the browser's way in: a cookie for what the page loads
    assert page.status_code == 200 and "viewfinder_token" in page.headers["set-cookie"]
    assert guarded.get("/images/1").status_code == 200
    guarded.cookies.clear()


def test_paths_hidden_from_remote_clients_unless_shown(guarded):
    read = {"Authorization": "Bearer r34d"}
    hit = guarded.post("/search", json={"query": "a cat"}, headers=read).json()["hits"][0]
    assert "/" not in hit["path"]
    stats = guarded.get("/stats", headers=read).json()
    assert "/" not in stats["db"]
    engine = guarded.app.state.engine
    engine.config = replace(engine.config, show_paths=True)
    try:
        hit = guarded.post("/search", json={"query": "a cat"}, headers=read).json()["hits"][0]
        assert hit["path"].startswith(str(guarded.folder))
    finally:
        engine.config = replace(engine.config, show_paths=False)


def test_cors_closed_by_default(guarded):
    r = guarded.options(
        "/search", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in r.headers


def test_rate_limit_per_client(guarded):
    # 61 requests cross at most one minute boundary, so one window gets more than 30 of them
    responses = [guarded.get("/health") for _ in range(61)]
    refused = [r for r in responses if r.status_code == 429]
    assert refused and responses[0].status_code in (200, 429)
    assert "requests a minute" in refused[0].json()["error"] and refused[0].headers["retry-after"]


def test_server_binds_to_loopback_by_default():
    import inspect

    from viewfinder.api import serve
    from viewfinder.cli import serve as serve_command

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(serve_command).parameters["host"].default.default == "127.0.0.1"


def test_bad_input_corpus_is_reported_line_by_line(tmp_path, tiny_spec):
    """The whole corpus: each bad file gets one line naming it, every good file is indexed."""
    expected = make_corpus(tmp_path / "corpus")
    lines: list[str] = []
    with Engine.open(tmp_path / "db", model=tiny_spec, workers=0, batch_size=4) as engine:
        report = engine.index(tmp_path / "corpus", progress=False, on_error=lines.append)
        rows = engine.store.catalog.images_under(str(tmp_path / "corpus"))
    for name, outcome in expected.items():
        full = str(tmp_path / "corpus" / name)
        named = [line for line in lines if line.startswith(shown_path(full) + ":")]
        if outcome == "reported":
            assert len(named) == 1 and "\n" not in named[0], name
        else:
            assert not named, named
            assert rows[full].error is None, name
    assert len(report.failed) == list(expected.values()).count("reported") == len(lines)


@pytest.mark.slow
def test_kill9_at_twenty_moments_loses_nothing(tmp_path, photos, tiny_spec):
    """kill -9 at 20 random moments of `viewfinder index`, each run given new files: after each
    kill the index opens, matches its catalogue exactly and answers; nothing committed is lost;
    a last run completes it."""
    folder = tmp_path / "pics"
    sample = sorted(p for p in photos.rglob("*") if p.is_file())

    def new_files(i: int) -> None:
        for f in sample:
            dst = folder / f"set{i:02d}" / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(f.read_bytes())

    args = ["index", str(folder), "--model", tiny_spec, "--batch-size", "2", "--workers", "1", "-q"]
    report = kill_cycles(args, tmp_path / "db", tiny_spec, 20, (2.0, 7.0), before_each=new_files)
    assert len(report.cycles) >= 15  # the rest were killed before they made the catalogue
    assert any(0 < c.images for c in report.cycles)
    for c in report.cycles:
        assert c.problems == [] and c.lost == 0 and c.search_ok, c
    assert report.final_problems == []
    assert report.final_images == 20 * len(sample)


@pytest.fixture()
def small_disk(tmp_path):
    """A 4 MB file system of its own (tmpfs), which the test can fill or make read-only."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the disk is full; returns it (delete it to free the space)."""
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow
def test_disk_full_and_read_only_folder_lose_nothing(tmp_path, photos, tiny_spec, small_disk):
    sample = sorted(p for p in photos.rglob("*") if p.is_file())
    folder = tmp_path / "pics"

    def add_set(i: int) -> None:
        for f in sample:
            (folder / f"set{i}").mkdir(parents=True, exist_ok=True)
            (folder / f"set{i}" / f.name).write_bytes(f.read_bytes())

    db = small_disk / "db"
    index = [
        sys.executable,
        "-m",
        "viewfinder",
        "index",
        *map(str, (folder, "--db", db, "--model", tiny_spec, "-q")),
    ]

    def count_and_verify() -> int:
        with Engine.open(db, model=tiny_spec) as engine:
            assert engine.store.verify() == []
            return engine.counts()["images"]

    add_set(0)
    subprocess.run(index, check=True, capture_output=True)
    before = count_and_verify()
    for i in range(1, 6):
        add_set(i)
    filler = _fill(small_disk)
    full = subprocess.run(index, capture_output=True, text=True)
    assert full.returncode != 0
    assert full.stderr.strip().count("\n") == 0 and "disk is full" in full.stderr, full.stderr
    filler.unlink()
    assert count_and_verify() >= before
    subprocess.run(index, check=True, capture_output=True)
    assert count_and_verify() == 6 * len(sample)

    add_set(6)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        ro = subprocess.run(index, capture_output=True, text=True)
        assert ro.returncode != 0
        assert ro.stderr.strip().count("\n") == 0 and "cannot be written" in ro.stderr, ro.stderr
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert count_and_verify() == 6 * len(sample)
    subprocess.run(index, check=True, capture_output=True)
    assert count_and_verify() == 7 * len(sample)


def test_file_that_vanishes_or_changes_during_the_run(tmp_path, photos, tiny_spec):
    """A file deleted after the walk is reported and the rest indexed; a file rewritten after
    the walk is indexed as it is when read, and the next run sees it as unchanged."""
    from viewfinder.ingest.pipeline import embed_files, start_run

    folder = copy_photos(photos, tmp_path / "pics", ["chelsea.png", "coffee.png", "rocket.jpg"])
    lines: list[str] = []
    with Engine.open(tmp_path / "db", model=tiny_spec, workers=0, batch_size=2) as engine:
        plan, report = start_run(folder, engine.store)
        (folder / "coffee.png").unlink()
        (folder / "chelsea.png").write_bytes((folder / "rocket.jpg").read_bytes())
        embed_files(plan, report, engine.store, engine.encoder, engine._embed_options(False, lines.append))
        assert report.embedded == 2 and len(lines) == 1 and "coffee.png" in lines[0], lines
        again = engine.index(folder, progress=False)
        assert again.deleted == 1 and again.failed == []
        assert engine.store.verify() == []


@pytest.mark.slow
def test_writer_process_while_the_server_answers(client, odd_folder, tmp_path, photos, tiny_spec):
    """`viewfinder index` in another process adds images while the server answers searches:
    every search succeeds, and the server then finds the new images without a restart."""
    new = copy_photos(photos, tmp_path / "more", ["astronaut.png", "horse.png"])
    db = client.app.state.engine.config.db
    writer = subprocess.Popen(
        [sys.executable, "-m", "viewfinder", "index", str(new), "--db", str(db), "--model", tiny_spec, "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    codes = []
    while writer.poll() is None:
        codes.append(client.post("/search", json={"query": "a horse", "k": 3}).status_code)
        time.sleep(0.1)  # within the server's rate limit for one client
    assert writer.returncode == 0, writer.stderr.read()
    assert codes and set(codes) == {200}
    hits = client.post("/search", json={"query": "a horse", "k": 20}).json()["hits"]
    assert {"astronaut.png", "horse.png"} <= {h["path"] for h in hits}
    assert client.app.state.engine.store.verify() == []


def test_connections_of_finished_threads_are_released(tmp_path):
    """Defect 11: the server grew under load. Its thread pool retires idle threads and starts new
    ones; each thread's SQLite connection (and page cache) was kept for ever. Now it goes with
    its thread."""
    import gc
    import threading

    from viewfinder.store.catalog import ImageCatalog

    cat = ImageCatalog(tmp_path / "c.sqlite")
    for _ in range(50):
        t = threading.Thread(target=cat.count_images)
        t.start()
        t.join()
    gc.collect()
    assert len(cat._connections) <= 2  # this thread's, and at most one not yet collected
    cat.close()


def _open_catalog(path: str, barrier, results) -> None:
    from viewfinder.store.catalog import ImageCatalog

    barrier.wait()
    try:
        ImageCatalog(Path(path)).close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_catalogue_together_all_succeed(tmp_path):
    """SQLite refused the switch to WAL at once ("database is locked", no busy wait) while another
    process was switching the same new file: about one open in four failed so."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    outcomes = []
    for attempt in range(12):
        barrier, results = ctx.Barrier(2), ctx.Queue()
        path = str(tmp_path / f"db{attempt}" / "catalog.sqlite")
        procs = [ctx.Process(target=_open_catalog, args=(path, barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes += [results.get(timeout=5) for _ in procs]
    assert outcomes == ["ok"] * 24, [o for o in outcomes if o != "ok"]


FORK_DURING_IMPORT = """
import importlib.abc, importlib.machinery, sys, threading, time

class SlowJpegPlugin(importlib.abc.MetaPathFinder):
    # another thread opening its first JPEG: Pillow imports its JPEG plugin, slowly here
    def find_spec(self, name, path, target=None):
        if name != "PIL.JpegImagePlugin":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        real = spec.loader

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return real.create_module(spec)

            def exec_module(self, module):
                importing.set()
                time.sleep(1.5)
                real.exec_module(module)

        spec.loader = Loader()
        return spec

importing = threading.Event()
sys.meta_path.insert(0, SlowJpegPlugin())
threading.Thread(target=lambda: __import__("PIL.JpegImagePlugin")).start()
importing.wait()
from viewfinder.ingest.pipeline import cpu_batches
from viewfinder.ingest.walk import scan

def to_tensor(image):
    import numpy as np
    return np.asarray(image.resize((8, 8)))

out = list(cpu_batches(scan(sys.argv[1]), to_tensor, batch_size=2, workers=1, max_pixels=10**8))
records = [r for _, batch in out for r in batch]
print("records", len(records), "failed", sum(r.error is not None for r in records))
"""


def test_decode_workers_forked_while_another_thread_imports_a_codec_do_not_hang(tmp_path):
    """A decode worker forked while another thread of the process was importing a Pillow plugin
    would wait forever for that import's lock (no thread of the worker holds it); the pipeline
    finishes the plugin imports before it forks."""
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 24), (40 * i, 90, 200)).save(folder / f"{i}.jpg")
    script = tmp_path / "fork_during_import.py"
    script.write_text(FORK_DURING_IMPORT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "records 3 failed 0" in done.stdout
