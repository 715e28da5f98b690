"""REST API: every endpoint and error case, over a real index of real photos."""

import base64
import io
import threading
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from viewfinder.api import create_app
from viewfinder.config import load_config

from conftest import copy_photos

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def client(tmp_path_factory, photos, tiny_spec):
    base = tmp_path_factory.mktemp("api")
    folder = copy_photos(
        photos, base / "pics", ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "horse.png"]
    )
    cfg = load_config(
        db=base / "db", model=tiny_spec, workers=0, token=TOKEN, allowed_roots=(str(base / "pics"),)
    )
    app = create_app(cfg)
    app.state.engine.index(folder, progress=False)
    with TestClient(app) as c:
        c.folder = folder
        yield c


def _png(color="red", size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_text_search_json(client):
    r = client.post("/search", json={"query": "2:a cat -a rocket", "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert len(body["hits"]) == 3 and body["collection_size"] == 5
    hit = body["hits"][0]
    assert {
        "rank",
        "score",
        "confidence",
        "abstain",
        "contributions",
        "id",
        "path",
        "thumbnail_url",
        "alt",
    } <= set(hit)
    assert set(hit["contributions"]) == {"a cat", "-a rocket"}
    assert hit["alt"]  # never empty


def test_paging_and_parts_list(client):
    first = client.post("/search", json={"query": "a cat", "k": 4}).json()["hits"]
    page = client.post("/search", json={"query": "a cat", "k": 2, "offset": 2}).json()["hits"]
    assert [h["id"] for h in page] == [h["id"] for h in first[2:4]]
    parts = client.post(
        "/search", json={"query": [{"text": "a cat", "weight": 2}, {"text": "a rocket", "weight": -1}]}
    ).json()
    assert set(parts["hits"][0]["contributions"]) == {"a cat", "-a rocket"}


def test_image_upload_and_hybrid(client):
    img = (client.folder / "chelsea.png").read_bytes()
    r = client.post("/search", files={"file": ("c.png", img, "image/png")}, data={"k": "2"})
    assert r.status_code == 200 and r.json()["hits"][0]["path"].endswith("chelsea.png")
    h = client.post(
        "/search",
        files={"file": ("c.png", img, "image/png")},
        data={"query": "a rocket", "text_weight": "0.3"},
    )
    assert set(h.json()["hits"][0]["contributions"]) == {"a rocket", "uploaded image"}
    uri = "data:image/png;base64," + base64.b64encode(img).decode()
    assert (
        client.post("/search", json={"image": uri, "k": 1}).json()["hits"][0]["path"].endswith("chelsea.png")
    )


def test_image_to_text(client):
    assert (
        client.post(
            "/texts", json={"texts": ["a cat", "a rocket"]}, headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()["added"]
        == 2
    )
    r = client.post("/search/image-to-text", files={"file": ("c.png", _png(), "image/png")})
    assert r.status_code == 200 and {h["text"] for h in r.json()["hits"]} == {"a cat", "a rocket"}
    hits = client.post("/search", json={"query": "a cat"}).json()["hits"]
    assert all(h["best_text"] in ("a cat", "a rocket") and ":" in h["alt"] for h in hits)


def test_images_thumbnails_stats_health(client):
    hit = client.post("/search", json={"query": "x", "k": 1}).json()["hits"][0]
    full = client.get(hit["image_url"])
    assert full.status_code == 200 and len(full.content) > 1000
    thumb = client.get(hit["thumbnail_url"])
    assert (
        thumb.headers["content-type"] == "image/jpeg"
        and max(Image.open(io.BytesIO(thumb.content)).size) <= 320
    )
    assert client.get("/stats").json()["images"] == 5
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200 and "/search" in client.get("/openapi.json").json()["paths"]
    assert client.get("/").status_code == 200 and "viewfinder" in client.get("/").text


@pytest.mark.parametrize(
    "call, status, needle",
    [
        (
            lambda c: c.post("/search", content=b"{not json", headers={"content-type": "application/json"}),
            422,
            "json",
        ),
        (lambda c: c.post("/search", json={"query": "cat", "k": 100000}), 422, "k"),
        (lambda c: c.post("/search", json={"query": "cat", "k": 0}), 422, "k"),
        (lambda c: c.post("/search", json={"query": ""}), 400, "query"),
        (
            lambda c: c.post("/search", files={"file": ("x.png", b"this is text", "image/png")}),
            422,
            "not an image",
        ),
        (
            lambda c: c.post("/search", files={"file": ("big.png", b"\0" * (21 << 20), "image/png")}),
            413,
            "MB",
        ),
        (
            lambda c: c.post("/search", files={"file": ("huge.png", _png(size=(12000, 12000)), "image/png")}),
            413,
            "limit",
        ),
        (lambda c: c.post("/search", json={"image": "/etc/passwd"}), 400, "data URI"),
        (lambda c: c.post("/search", json={"query": [{"image": "../../etc/passwd"}]}), 400, "data URI"),
        (lambda c: c.get("/images/999999"), 404, "not in the catalogue"),
        (lambda c: c.get("/images/..%2F..%2Fetc%2Fpasswd"), 404, "not found"),
        (lambda c: c.get("/images/1%2F..%2F..%2Fetc%2Fpasswd"), 404, "not found"),
        (lambda c: c.get("/thumbnails/abc"), 422, "image_id"),
        (lambda c: c.post("/texts", json={"texts": ["x"]}), 401, "token"),
        (
            lambda c: c.post("/texts", json={"texts": ["x"]}, headers={"Authorization": "Bearer wrong"}),
            401,
            "token",
        ),
        (
            lambda c: c.post("/index", json={"folder": "/etc"}, headers={"Authorization": f"Bearer {TOKEN}"}),
            403,
            "allowed root",
        ),
    ],
)
def test_errors_are_json_with_right_status(client, call, status, needle):
    r = call(client)
    assert r.status_code == status, r.text
    assert needle.lower() in r.json()["error"].lower()


def test_path_in_query_never_reaches_file_system(client):
    """A remote query naming a file on the server is text, not an image read from disk."""
    r = client.post("/search", json={"query": str(client.folder / "chelsea.png"), "k": 1}).json()
    assert r["hits"][0]["contributions"].keys() == {str(client.folder / "chelsea.png")[:80]}
    assert r["hits"][0]["score"] < 0.99


def test_write_endpoints_disabled_without_token(tmp_path, tiny_spec):
    app = create_app(load_config(db=tmp_path / "db", model=tiny_spec, workers=0))
    with TestClient(app) as c:
        r = c.post("/texts", json={"texts": ["x"]})
        assert r.status_code == 403 and "disabled" in r.json()["error"]


def test_index_endpoint_runs_in_background(client):
    r = client.post(
        "/index", json={"folder": str(client.folder)}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status_code == 202
    import time

    for _ in range(100):
        job = client.get("/stats").json()["index_job"]
        if job["state"] != "running":
            break
        time.sleep(0.1)
    assert job["state"] == "done" and job["embedded"] == 0  # nothing changed since the fixture indexed it


def test_concurrent_burst(client):
    results, errors = [], []

    def worker(i):
        try:
            r = client.post("/search", json={"query": f"query {i}", "k": 3})
            results.append(r.status_code)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [200] * 24


def test_reindex_runs_in_the_background_and_stats_show_it(client, tiny_hf_dir):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    before = client.get("/stats").json()["images"]
    r = client.post("/reindex", json={"model": f"hf:{tiny_hf_dir}"}, headers=headers)
    assert r.status_code == 202, r.text
    assert client.get("/stats").json()["index_job"]["kind"] == "reindex"
    for _ in range(300):
        job = client.get("/stats").json()["index_job"]
        if job["state"] != "running":
            break
        assert client.post("/search", json={"query": "a cat", "k": 3}).status_code == 200  # old index answers
        time.sleep(0.2)
    assert job["state"] == "done", job
    stats = client.get("/stats").json()
    assert stats["model"] == f"hf:{tiny_hf_dir}" and stats["images"] == before
    assert client.post("/search", json={"query": "a cat", "k": 3}).json()["hits"]
    assert client.post("/reindex", json={"model": "nope:x"}, headers=headers).status_code == 400


def test_explain_heatmaps_and_overlay(client):
    r = client.post("/search", json={"query": "a cat", "k": 2, "explain": True})
    assert r.status_code == 200
    for hit in r.json()["hits"]:
        heat = hit["heatmap"]
        assert len(heat["values"]) == heat["rows"] and len(heat["values"][0]) == heat["cols"]
        flat = [v for row in heat["values"] for v in row]
        assert min(flat) == 0.0 and max(flat) == 1.0 and heat["summary"].startswith("strongest")
        assert hit["verdict"] in {"strong match", "possible match", "weak match", "no good match"}
    assert (
        "heatmap" not in r.json()["hits"][0]
        or client.post("/search", json={"query": "a cat"}).json()["hits"][0]["heatmap"] is None
    )
    assert client.post("/search", json={"query": "a cat", "k": 50, "explain": True}).status_code == 422
    hit_id = r.json()["hits"][0]["id"]
    png = client.get(f"/explain/{hit_id}", params={"query": "a cat"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.headers["x-heatmap-summary"].startswith("strongest")
    assert Image.open(io.BytesIO(png.content)).size[0] > 0
    assert client.get("/explain/999999", params={"query": "a cat"}).status_code == 404
    assert client.get(f"/explain/{hit_id}").status_code == 422  # no query


def test_filters_field_and_inline(client):
    jpgs = client.post("/search", json={"query": "a cat", "k": 10, "filters": {"type": "jpg"}}).json()["hits"]
    assert jpgs and all(h["path"].endswith(".jpg") for h in jpgs)
    inline = client.post("/search", json={"query": "a cat type:png", "k": 10}).json()["hits"]
    assert inline and all(h["path"].endswith(".png") for h in inline)
    assert client.post("/search", json={"query": "a cat", "filters": {"album": "x"}}).status_code == 422
    bad = client.post("/search", json={"query": "a cat colour:red"})
    assert bad.status_code == 400 and "not a filter" in bad.json()["error"]  # like other query errors


def test_browse_and_image_info(client):
    page = client.get("/browse", params={"limit": 2}).json()
    assert page["total"] == 5 and len(page["images"]) == 2
    rest = client.get("/browse", params={"limit": 10, "offset": 2}).json()["images"]
    ids = [i["id"] for i in page["images"] + rest]
    assert len(set(ids)) == 5  # pages neither repeat nor skip
    # newest first: every file's date is its modification time (no EXIF in these)
    dates = [i["taken_at"] for i in page["images"] + rest]
    assert dates == sorted(dates, reverse=True) and all(i["taken_source"] == "file" for i in rest)
    jpgs = client.get("/browse", params={"type": "jpg"}).json()
    assert jpgs["total"] == 1 and jpgs["images"][0]["path"] == "rocket.jpg"  # a name, not a server path
    info = client.get(jpgs["images"][0]["image_url"] + "/info").json()
    assert info["id"] == jpgs["images"][0]["id"] and info["path"] == "rocket.jpg"
    assert info["width"] > 0 and info["size"] > 0 and info["thumbnail_url"].startswith("/thumbnails/")
    assert client.get("/images/999999/info").status_code == 404
    assert client.get("/browse", params={"after": "soon"}).status_code == 400
    assert client.get("/browse", params={"within": "2km"}).status_code == 400  # within needs near
    assert client.get("/browse", params={"limit": 0}).status_code == 422


def test_server_caps_malloc_arenas_unless_the_user_set_them(monkeypatch):
    from viewfinder.api import cap_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False  # the user's setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert cap_malloc_arenas() is True  # glibc on Linux: mallopt took it
