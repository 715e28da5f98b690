import sqlite3

import numpy as np
import pytest

from viewfinder.errors import ModelMismatchError
from viewfinder.store import NewImage, Store, VectorIndex, choose_kind
from viewfinder.store.catalog import MIGRATIONS, ImageCatalog


def _unit(n, d, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_batch_write_bumps_version_and_keeps_vectors(tmp_path):
    cat = ImageCatalog(tmp_path / "c.sqlite")
    v0 = cat.version("images")
    vecs = _unit(2, 8)
    ids = cat.write_batch(
        [
            NewImage("/a.jpg", 1, 1.0, "h1"),
            NewImage("/b.jpg", 0, 1.0, error="/b.jpg: empty"),
            NewImage("/c.jpg", 2, 1.0, "h2"),
        ],
        vecs,
    )
    assert cat.version("images") == v0 + 1
    assert cat.count_images() == 2 and cat.count_images(with_vectors=False) == 3
    got = cat.image_vectors(ids, 8)
    np.testing.assert_array_equal(got[ids[0]], vecs[0])
    np.testing.assert_array_equal(got[ids[2]], vecs[1])
    assert cat.errors() == [("/b.jpg", "/b.jpg: empty")]


def test_model_binding_refuses_other_weights(tmp_path):
    cat = ImageCatalog(tmp_path / "c.sqlite")
    cat.bind_model("mini", 256, "abc")
    cat.bind_model("mini", 256, "abc")
    with pytest.raises(ModelMismatchError, match="built with model 'mini'"):
        cat.bind_model("mini", 256, "other-weights")


def test_migration_from_first_schema(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for statement in filter(str.strip, MIGRATIONS[0].split(";\n")):
        conn.execute(statement)
    conn.execute("PRAGMA user_version=1")
    conn.execute("INSERT INTO images(path, size, mtime, indexed_at) VALUES('/x.jpg', 1, 1, 1)")
    conn.commit()
    conn.close()
    cat = ImageCatalog(path)
    rec = cat.images_under("/")["/x.jpg"]
    assert rec.caption is None and rec.ocr_text is None
    assert cat.conn.execute("SELECT rowid FROM image_fts WHERE image_fts MATCH 'x'").fetchall() == [(rec.id,)]


def test_sha256_column_becomes_content_hash_with_its_values(tmp_path):
    path = tmp_path / "v7.sqlite"
    conn = sqlite3.connect(path)
    for migration in MIGRATIONS[:7]:
        for statement in filter(str.strip, migration.split(";\n")):
            conn.execute(statement)
    conn.execute("PRAGMA user_version=7")
    conn.execute(
        "INSERT INTO images(path, size, mtime, sha256, indexed_at) VALUES('/x.jpg', 1, 1, 'ab12', 1)"
    )
    conn.commit()
    conn.close()
    cat = ImageCatalog(path)
    assert cat.images_under("/")["/x.jpg"].content_hash == "ab12"
    assert cat.content_hashes() == [(1, "ab12")]


def test_lexical_search_follows_captions_and_deletes(tmp_path):
    cat = ImageCatalog(tmp_path / "c.sqlite")
    ids = cat.write_batch(
        [NewImage("/p/IMG_1.jpg", 1, 1.0, "a"), NewImage("/p/red_car.jpg", 1, 1.0, "b")], _unit(2, 4)
    )
    cat.set_captions([(ids[0], "a tabby cat sleeping", 0.7)], "vocab")
    cat.set_ocr([(ids[1], "STOP")])
    assert [i for i, _ in cat.lexical_search("cats", 5)] == [ids[0]]  # porter stemming
    assert [i for i, _ in cat.lexical_search("red car", 5)] == [ids[1]]
    assert [i for i, _ in cat.lexical_search("stop sign", 5)] == [ids[1]]
    cat.delete_images([ids[0]])
    assert cat.lexical_search("cat", 5) == []
    assert cat.lexical_search("!!!", 5) == []


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_index_search_matches_exact(kind):
    data = _unit(2000, 32)
    ids = np.arange(10, 2010)
    index = VectorIndex(32, kind)
    index.add(ids, data)
    queries = _unit(20, 32, seed=1)
    scores, got = index.search(queries, 10)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10] + 10
    recall = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact)])
    assert recall >= (1.0 if kind == "flat" else 0.9)
    np.testing.assert_allclose(scores[:, 0], np.max(queries @ data.T, axis=1), atol=1e-5)


def test_stale_index_is_rebuilt_from_catalogue(tmp_path):
    store = Store(tmp_path / "db")
    store.catalog.bind_model("m", 8, "w")
    vecs = _unit(3, 8)
    ids = store.catalog.write_batch([NewImage(f"/{i}.jpg", 1, 1.0, f"h{i}") for i in range(3)], vecs)
    index = store.vectors("images")
    assert len(index) == 3
    # another process (or a run killed before its checkpoint) adds rows: the file is now stale
    store.catalog.write_batch([NewImage("/3.jpg", 1, 1.0, "h3")], _unit(1, 8, seed=3))
    fresh = Store(tmp_path / "db")
    assert len(fresh.vectors("images")) == 4
    _, got = fresh.vectors("images").search(vecs[:1], 1)
    assert got[0][0] == ids[0]


def test_auto_kind_by_size_and_memory():
    assert choose_kind(1000).kind == "flat"
    assert choose_kind(1_000_000, 256, ram_budget=8 * 2**30).kind == "hnsw"
    # 1.5M x 512 float32 vectors (2.9 GiB) plus graph exceed a 2 GiB budget: codes in RAM, vectors on disk
    choice = choose_kind(1_500_000, 512, ram_budget=2 * 2**30)
    assert choice.kind == "ivfpq" and "GiB" in choice.reason
    # 10M fits a 64 GiB budget, but HNSW's recall there is 0.81-0.90: IVF-PQ by size
    choice = choose_kind(10_000_000, 512, ram_budget=64 * 2**30)
    assert choice.kind == "ivfpq" and "HNSW limit" in choice.reason
    assert choose_kind(5, requested="ivfpq").kind == "ivfpq"
    with pytest.raises(ValueError, match="index kind"):
        choose_kind(5, requested="annoy")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_memory_mapped_index_searches_then_copies_itself_before_a_change(tmp_path, kind):
    data = _unit(5000, 32)
    index = VectorIndex(32, kind, expected=5000)
    index.add(np.arange(5000), data)
    index.save(tmp_path / "i.faiss", version=3)
    assert VectorIndex.load(tmp_path / "i.faiss", version=4, dim=32) is None  # stale
    mapped = VectorIndex.load(tmp_path / "i.faiss", version=3, dim=32)
    np.testing.assert_array_equal(mapped.search(data[:5], 3)[1], index.search(data[:5], 3)[1])
    # a newer file replaces it on disk (another process checkpointed) while this one is mapped
    VectorIndex(32, "flat").save(tmp_path / "i.faiss", version=9)
    mapped.add(np.array([7000]), data[:1])  # FAISS would abort on a write to mapped memory
    mapped.remove([0])
    assert len(mapped) == (5000 if kind == "flat" else 5001)
    assert 7000 in mapped.search(data[:1], 2)[1][0]


def test_checkpoint_switches_kind_when_the_collection_outgrows_exact_search(tmp_path):
    store = Store(tmp_path / "db", exact_limit=50)
    store.catalog.bind_model("m", 8, "w")
    vecs = _unit(120, 8)
    all_ids = []
    for start in range(0, 120, 40):  # as the indexing pipeline commits batches
        index = store.vectors("images")
        ids = store.catalog.write_batch(
            [NewImage(f"/{i}.jpg", 1, 1.0, f"h{i}") for i in range(start, start + 40)],
            vecs[start : start + 40],
        )
        index.add(np.asarray(ids), vecs[start : start + 40])
        all_ids += ids
        store.note_change("images", index)
        store.checkpoint("images")
    index = store.vectors("images")
    assert index.kind == "hnsw" and len(index) == 120
    _, got = index.search(vecs[70:71], 1)
    assert got[0][0] == all_ids[70]
    assert Store(tmp_path / "db", exact_limit=50).vectors("images").kind == "hnsw"  # saved as such


def test_pq_code_size_follows_the_dimension():
    from viewfinder.store.vectors import pq_bytes

    assert [pq_bytes(d) for d in (256, 512, 384, 768, 1000, 8, 3)] == [64, 128, 96, 128, 125, 2, 1]
    assert all(d % pq_bytes(d) == 0 for d in range(1, 2049))


def test_saves_of_one_index_from_two_writers_at_once_both_succeed(tmp_path):
    """A server rebuilding a stale index and `viewfinder index` in another process may save the
    same files at the same moment (tests/test_reliability.py met it): each save must succeed and
    leave a loadable index, with no temporary file behind."""
    from concurrent.futures import ThreadPoolExecutor

    data = _unit(2000, 32)
    index = VectorIndex(32, "flat")
    index.add(np.arange(2000), data)
    path = tmp_path / "i.faiss"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda v: index.save(path, version=v % 3), range(200)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.faiss", "i.faiss.json"]
    loaded = next(
        VectorIndex.load(path, version=v, dim=32) for v in range(3) if VectorIndex.load(path, v, 32)
    )
    assert len(loaded) == 2000


def test_a_new_file_is_hashed_once_per_algorithm_against_vanished_rows(tmp_path, monkeypatch):
    """Ten vanished rows of the same size (SHA-256 and BLAKE3 ones): the new file is read once
    for each algorithm, not once per row, and found as the move of the row it matches."""
    from viewfinder.images import content_hash
    from viewfinder.ingest import pipeline
    from viewfinder.ingest.walk import FileStat
    from viewfinder.store.catalog import ImageRecord

    new = tmp_path / "moved.jpg"
    new.write_bytes(b"x" * 100)
    calls = []
    real = pipeline.content_hash_file
    monkeypatch.setattr(pipeline, "content_hash_file", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    known = {
        f"/gone/{i}.jpg": ImageRecord(i, f"/gone/{i}.jpg", 100, 1.0, h, 1, 1, 1.0, None)
        for i, h in enumerate(["ab" * 32] * 5 + ["blake3:" + "cd" * 32] * 4 + [content_hash(b"x" * 100)])
    }
    plan = pipeline.plan_index([FileStat(str(new), 100, 2.0)], known)
    assert [rid for rid, _ in plan.moves] == [9] and len(calls) == 2
