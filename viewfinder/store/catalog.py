"""The SQLite catalogue: images, their vectors, stored texts, and which model built them.

It is the source of truth. The FAISS files beside it are derived from it (see vectors.py): every
batch of new vectors is committed here first, in one transaction that also bumps a version
number, so a kill at any moment leaves a catalogue that opens, and a stale index is rebuilt."""

from __future__ import annotations

import math
import os
import re
import sqlite3
import threading
import time
import unicodedata
import weakref
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..errors import ModelMismatchError, NotFoundError, storage_error

SCHEMA_VERSION = 8

# Each entry upgrades the schema from version i to i + 1; never edit one that has shipped.
# Statements end with ";" at the end of a line (trigger bodies keep theirs on one line).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        mtime REAL NOT NULL,
        sha256 TEXT,
        width INTEGER,
        height INTEGER,
        indexed_at REAL NOT NULL,
        error TEXT
    );
    CREATE INDEX images_sha256 ON images(sha256);
    CREATE INDEX images_size ON images(size);
    CREATE TABLE image_vectors (image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, v BLOB NOT NULL);
    CREATE TABLE texts (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        source TEXT NOT NULL,
        v BLOB,
        UNIQUE (text, source)
    );
    """,  # noqa: E501  (a shipped migration: its text stays as it was)
    """
    ALTER TABLE images ADD COLUMN caption TEXT;
    ALTER TABLE images ADD COLUMN caption_source TEXT;
    ALTER TABLE images ADD COLUMN ocr_text TEXT;
    """,
    # Lexical search over file paths, captions and OCR text, kept in step by triggers.
    """
    CREATE VIRTUAL TABLE image_fts USING fts5(path, caption, ocr_text, content='images', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
    CREATE TRIGGER images_fts_ai AFTER INSERT ON images BEGIN INSERT INTO image_fts(rowid, path, caption, ocr_text) VALUES (new.id, new.path, new.caption, new.ocr_text); END;
    CREATE TRIGGER images_fts_ad AFTER DELETE ON images BEGIN INSERT INTO image_fts(image_fts, rowid, path, caption, ocr_text) VALUES ('delete', old.id, old.path, old.caption, old.ocr_text); END;
    CREATE TRIGGER images_fts_au AFTER UPDATE ON images BEGIN INSERT INTO image_fts(image_fts, rowid, path, caption, ocr_text) VALUES ('delete', old.id, old.path, old.caption, old.ocr_text); INSERT INTO image_fts(rowid, path, caption, ocr_text) VALUES (new.id, new.path, new.caption, new.ocr_text); END;
    INSERT INTO image_fts(image_fts) VALUES ('rebuild');
    """,  # noqa: E501  (a shipped migration; trigger bodies stay on one line)
    # How sure the captioner was (vocabulary captions; NULL for others): alt text uses sure ones.
    "ALTER TABLE images ADD COLUMN caption_confidence REAL;",
    # What the photo's header says (ingest/metadata.py); taken_source NULL: not read yet.
    """
    ALTER TABLE images ADD COLUMN taken_at REAL;
    ALTER TABLE images ADD COLUMN taken_source TEXT;
    ALTER TABLE images ADD COLUMN camera TEXT;
    ALTER TABLE images ADD COLUMN lens TEXT;
    ALTER TABLE images ADD COLUMN latitude REAL;
    ALTER TABLE images ADD COLUMN longitude REAL;
    CREATE INDEX images_taken_at ON images(taken_at);
    """,
    # Place names from the GPS coordinates (ingest/places.py); place_source NULL: not looked up.
    """
    ALTER TABLE images ADD COLUMN city TEXT;
    ALTER TABLE images ADD COLUMN metro TEXT;
    ALTER TABLE images ADD COLUMN region TEXT;
    ALTER TABLE images ADD COLUMN country TEXT;
    ALTER TABLE images ADD COLUMN country_code TEXT;
    ALTER TABLE images ADD COLUMN place_names TEXT;
    ALTER TABLE images ADD COLUMN place_source TEXT;
    CREATE INDEX images_latitude ON images(latitude);
    """,
    # The camera's UTC offset (dates shown as its clock showed them) and EXIF orientation: the
    # headers are read again, only the headers.
    """
    ALTER TABLE images ADD COLUMN taken_offset INTEGER;
    ALTER TABLE images ADD COLUMN orientation INTEGER;
    UPDATE images SET taken_source=NULL WHERE taken_source='exif';
    """,
    # BLAKE3 content hashes ("blake3:<hex>"); the SHA-256 ones already stored stay as they are
    """
    ALTER TABLE images RENAME COLUMN sha256 TO content_hash;
    DROP INDEX images_sha256;
    CREATE INDEX images_content_hash ON images(content_hash);
    """,
]


# Words that match nearly every caption ("a photo of a ..."): dropped from lexical queries.
STOPWORDS = frozenset(
    "a an the of in on at to and or with for from by is are was be this that it its as our we".split()
)


class Collection(StrEnum):
    """What a vector index holds: image embeddings, or the embeddings of stored texts."""

    IMAGES = "images"
    TEXTS = "texts"


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str
    size: int
    mtime: float
    content_hash: str | None  # "blake3:<hex>", or SHA-256 hex where indexed before 2026-11-26
    width: int | None
    height: int | None
    indexed_at: float
    error: str | None
    caption: str | None = None
    caption_source: str | None = None
    ocr_text: str | None = None
    caption_confidence: float | None = None
    taken_at: float | None = None
    taken_source: str | None = None  # "exif", "file" (its modification time), None: not read yet
    camera: str | None = None
    lens: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    city: str | None = None
    metro: str | None = None  # the big city around `city` (ingest/places.py)
    region: str | None = None
    country: str | None = None
    country_code: str | None = None
    taken_offset: int | None = None  # minutes east of UTC, where the camera wrote it
    orientation: int | None = None  # EXIF orientation 1-8


@dataclass(frozen=True)
class NewImage:
    """One decoded file, ready to be written with its vector (or with the reason it failed)."""

    path: str
    size: int
    mtime: float
    content_hash: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class TextRecord:
    id: int
    text: str
    source: str


_IMAGE_COLUMNS = (
    "id, path, size, mtime, content_hash, width, height, indexed_at, error, caption, caption_source, "
    "ocr_text, caption_confidence, taken_at, taken_source, camera, lens, latitude, longitude, city, metro, "
    "region, country, country_code, taken_offset, orientation"
)


LOCK_WAIT_S = 60.0  # how long a connection waits for another process's write lock


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, waiting like any other write. SQLite answers "database is locked" at once,
    without its busy wait, when another process is switching the same new file (two index runs
    starting together on a new db failed so in 68 of 300 opens)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (sqlite3.Connection itself cannot)."""


class ImageCatalog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per thread: the API serves requests from a thread pool, and SQLite in
        # WAL mode lets those readers run while one writer (an index run) commits batches.
        self._local = threading.local()
        # weakly held: the server's thread pool retires idle threads and starts new ones, and a
        # retired thread's connection (with its page cache) must go with it, not pile up here
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._migrate()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                str(self.path),
                timeout=LOCK_WAIT_S,
                isolation_level=None,
                check_same_thread=False,
                factory=_Connection,
            )
            try:
                _use_wal(conn)  # writes the WAL's files: fails on a full disk
            except sqlite3.OperationalError as exc:
                conn.close()
                _raise_clear(self.path.parent, exc)
                raise
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.create_function("km", 4, _km_or_null, deterministic=True)  # near: filters
            # file names that are not valid UTF-8 are stored as their bytes (see _text)
            conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
            self._local.conn = conn
            self._connections.add(conn)
        return conn

    # -- schema ---------------------------------------------------------------------------------
    def _migrate(self) -> None:
        # The version is read inside the write transaction: a second process opening a new
        # catalogue at the same moment waits for the first, then finds the tables made.
        with self.transaction():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ModelMismatchError(
                    f"{self.path}: catalogue schema {version} is newer than this viewfinder "
                    f"({SCHEMA_VERSION}); upgrade viewfinder"
                )
            for target in range(version, SCHEMA_VERSION):
                for statement in filter(str.strip, MIGRATIONS[target].split(";\n")):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={target + 1}")

    def transaction(self):
        return _Transaction(self.conn, self.path.parent)

    def close(self) -> None:
        for conn in list(self._connections):
            conn.close()
        self._connections.clear()
        self._local = threading.local()

    # -- meta -----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def version(self, collection: Collection) -> int:
        return int(self.get_meta(f"{collection}_version") or 0)

    def _bump(self, collection: Collection) -> None:
        self.set_meta(f"{collection}_version", str(self.version(collection) + 1))

    def bind_model(self, spec: str, dim: int, fingerprint: str) -> None:
        """Record the model on first use; refuse a different one afterwards."""
        stored = self.get_meta("model_spec")
        if stored is None:
            with self.transaction():
                self.set_meta("model_spec", spec)
                self.set_meta("model_dim", str(dim))
                self.set_meta("model_fingerprint", fingerprint)
            return
        if stored != spec or self.get_meta("model_fingerprint") != fingerprint:
            raise ModelMismatchError(
                f"{self.path.parent}: this index was built with model {stored!r} "
                f"(weights {self.get_meta('model_fingerprint')}), not {spec!r} (weights {fingerprint}); "
                "use the same --model, or a new --db for the other model"
            )

    def rebind_fingerprint(self, fingerprint: str) -> None:
        """The same weights under a new fingerprint (Engine._bind decides that they are)."""
        with self.transaction():
            self.set_meta("model_fingerprint", fingerprint)

    # -- images ---------------------------------------------------------------------------------
    def count_images(self, with_vectors: bool = True) -> int:
        sql = "SELECT COUNT(*) FROM image_vectors" if with_vectors else "SELECT COUNT(*) FROM images"
        return int(self.conn.execute(sql).fetchone()[0])

    def count_errors(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM images WHERE error IS NOT NULL").fetchone()[0])

    def content_hashes(self) -> list[tuple[int, str]]:
        """(id, content hash) of every image that was read without error."""
        return self.conn.execute(
            "SELECT id, content_hash FROM images WHERE error IS NULL AND content_hash IS NOT NULL ORDER BY id"
        ).fetchall()

    def images_under(self, root: str) -> dict[str, ImageRecord]:
        prefix = os.fsencode(root.rstrip("/") + "/")  # compared as bytes: exact for any file name
        rows = self.conn.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE substr(CAST(path AS BLOB), 1, ?) = ?",
            (len(prefix), prefix),
        ).fetchall()
        return {r[1]: ImageRecord(*r) for r in rows}

    def get_images(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        out: dict[int, ImageRecord] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id IN ({marks})", chunk):
                out[r[0]] = ImageRecord(*r)
        return out

    def get_image(self, image_id: int) -> ImageRecord:
        rec = self.get_images([image_id]).get(image_id)
        if rec is None:
            raise NotFoundError(f"image id {image_id} is not in the catalogue")
        return rec

    def image_at(self, path: str) -> ImageRecord:
        """The record of the file at `path` (as stored: absolute)."""
        row = self.conn.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE path = CAST(? AS TEXT)", (_text(path),)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"{path}: not in this index")
        return ImageRecord(*row)

    def errors(self, limit: int = 100) -> list[tuple[str, str]]:
        return self.conn.execute(
            "SELECT path, error FROM images WHERE error IS NOT NULL ORDER BY path LIMIT ?", (limit,)
        ).fetchall()

    def write_batch(
        self, images: Sequence[NewImage], vectors: np.ndarray | None, replace_ids: Iterable[int] = ()
    ) -> list[int]:
        """Insert decoded images (vector rows in order for those without error) in one transaction.
        Rows in `replace_ids` (older versions of the same paths) go in the same transaction."""
        now = time.time()
        ids: list[int] = []
        vec_iter = iter(vectors if vectors is not None else [])
        with self.transaction():
            self._delete(list(replace_ids))
            for im in images:
                cur = self.conn.execute(
                    "INSERT INTO images(path, size, mtime, content_hash, width, height, indexed_at, error) "
                    "VALUES(CAST(? AS TEXT),?,?,?,?,?,?,CAST(? AS TEXT)) "
                    "ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime=excluded.mtime, "
                    "content_hash=excluded.content_hash, "
                    "width=excluded.width, height=excluded.height, indexed_at=excluded.indexed_at, "
                    "error=excluded.error, taken_source=NULL "  # new content: read its header again
                    "RETURNING id",
                    (
                        _text(im.path),
                        im.size,
                        im.mtime,
                        im.content_hash,
                        im.width,
                        im.height,
                        now,
                        _text(im.error),
                    ),
                )
                image_id = int(cur.fetchone()[0])
                ids.append(image_id)
                if im.error is None:
                    vec = np.asarray(next(vec_iter), dtype=np.float32)
                    self.conn.execute(
                        "INSERT OR REPLACE INTO image_vectors(image_id, v) VALUES(?, ?)",
                        (image_id, vec.tobytes()),
                    )
                else:
                    self.conn.execute("DELETE FROM image_vectors WHERE image_id=?", (image_id,))
            self._bump(Collection.IMAGES)
        return ids

    def move_image(self, image_id: int, new_path: str, size: int, mtime: float) -> None:
        """A renamed or touched file with the same content keeps its id and vector."""
        with self.transaction():
            self.conn.execute(
                "UPDATE images SET path=CAST(? AS TEXT), size=?, mtime=? WHERE id=?",
                (_text(new_path), size, mtime, image_id),
            )

    def delete_images(self, ids: Sequence[int]) -> None:
        if ids:
            with self.transaction():
                self._delete(ids)

    def _delete(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            self.conn.execute(f"DELETE FROM image_vectors WHERE image_id IN ({marks})", chunk)
            self.conn.execute(f"DELETE FROM images WHERE id IN ({marks})", chunk)
        self._bump(Collection.IMAGES)

    def image_vectors(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for image_id, blob in self.conn.execute(
                f"SELECT image_id, v FROM image_vectors WHERE image_id IN ({marks})", chunk
            ):
                out[int(image_id)] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return out

    def vectors_of(self, collection: Collection, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        return (
            self.image_vectors(ids, dim) if collection == Collection.IMAGES else self.text_vectors(ids, dim)
        )

    def records_of(
        self, collection: Collection, ids: Sequence[int]
    ) -> dict[int, ImageRecord] | dict[int, TextRecord]:
        return self.get_images(ids) if collection == Collection.IMAGES else self.get_texts(ids)

    def iter_vectors(
        self, collection: Collection, dim: int, chunk: int = 50_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (ids, vectors) of a collection in id order, a chunk at a time (for index rebuilds)."""
        table, key = ("image_vectors", "image_id") if collection == Collection.IMAGES else ("texts", "id")
        last = -1
        while True:
            rows = self.conn.execute(
                f"SELECT {key}, v FROM {table} WHERE {key} > ? AND v IS NOT NULL ORDER BY {key} LIMIT ?",
                (last, chunk),
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            last = int(ids[-1])
            yield ids, vecs

    def sample_vectors(self, collection: Collection, dim: int, n: int) -> np.ndarray:
        """Up to n stored vectors drawn at random (stable for a given catalogue state)."""
        table = "image_vectors" if collection == Collection.IMAGES else "texts WHERE v IS NOT NULL"
        rows = self.conn.execute(
            f"SELECT v FROM {table} ORDER BY (rowid * 2654435761) % 4294967296 LIMIT ?", (n,)
        ).fetchall()
        if not rows:
            return np.zeros((0, dim), np.float32)
        return np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), dim)

    # -- captions, OCR, lexical search ---------------------------------------------------------------
    def images_needing(
        self, what: str, overwrite: bool = False, limit: int = 256, after: int = 0
    ) -> list[ImageRecord]:
        """Embedded images without a caption (what="caption") or not yet OCR'd (what="ocr")."""
        column = {"caption": "caption", "ocr": "ocr_text"}[what]
        cond = "" if overwrite else f"AND i.{column} IS NULL"
        rows = self.conn.execute(
            f"SELECT {', '.join('i.' + c.strip() for c in _IMAGE_COLUMNS.split(','))} FROM images i JOIN "
            "image_vectors v ON v.image_id = i.id "
            f"WHERE i.id > ? {cond} ORDER BY i.id LIMIT ?",
            (after, limit),
        ).fetchall()
        return [ImageRecord(*r) for r in rows]

    def count_captioned(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM images WHERE caption IS NOT NULL").fetchone()[0])

    def set_captions(self, items: Sequence[tuple[int, str, float | None]], source: str) -> None:
        """(image id, caption, the captioner's confidence or None) for each image."""
        with self.transaction():
            self.conn.executemany(
                "UPDATE images SET caption=?, caption_source=?, caption_confidence=? WHERE id=?",
                [(c, source, conf, i) for i, c, conf in items],
            )

    def filter_ids(self, filters) -> np.ndarray:
        """Ids of the images with a vector that pass `filters` (query/filters.py's Filters)."""
        where, args = _filter_sql(filters)
        rows = self.conn.execute(
            "SELECT i.id FROM images i JOIN image_vectors v ON v.image_id = i.id WHERE " + where, args
        ).fetchall()
        return np.array([r[0] for r in rows], np.int64)

    def browse(self, filters, offset: int, limit: int) -> tuple[int, list[ImageRecord]]:
        """The images that pass `filters`, newest first (undated last): how many in all, and the
        records of the page from `offset`."""
        where, args = _filter_sql(filters)
        total = self.conn.execute("SELECT COUNT(*) FROM images i WHERE " + where, args).fetchone()[0]
        rows = self.conn.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images i WHERE {where} "
            "ORDER BY i.taken_at IS NULL, i.taken_at DESC, i.id LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return int(total), [ImageRecord(*r) for r in rows]

    def count_without_metadata(self) -> int:
        return int(
            self.conn.execute(
                "SELECT COUNT(*) FROM images WHERE error IS NULL AND taken_source IS NULL"
            ).fetchone()[0]
        )

    def images_without_metadata(self) -> list[tuple[int, str]]:
        """(id, path) of the images read without error whose header facts are not stored yet."""
        return self.conn.execute(
            "SELECT id, path FROM images WHERE error IS NULL AND taken_source IS NULL ORDER BY id"
        ).fetchall()

    def set_metadata(self, items: Sequence[tuple[int, object]]) -> None:
        """(image id, ingest/metadata.py's PhotoMeta)."""
        with self.transaction():
            self.conn.executemany(
                "UPDATE images SET taken_at=?, taken_source=?, camera=?, lens=?, latitude=?, longitude=?, "
                "taken_offset=?, orientation=?, place_source=NULL WHERE id=?",  # the place is looked up again
                [
                    (m.taken_at, m.taken_source, m.camera, m.lens, m.latitude, m.longitude, m.taken_offset)
                    + (m.orientation, i)
                    for i, m in items
                ],
            )

    def images_without_place(self) -> list[tuple[int, float, float]]:
        """(id, latitude, longitude) of the images with GPS coordinates not looked up yet."""
        return self.conn.execute(
            "SELECT id, latitude, longitude FROM images WHERE latitude IS NOT NULL AND longitude IS NOT NULL "
            "AND place_source IS NULL ORDER BY id"
        ).fetchall()

    def set_places(self, items: Sequence[tuple[int, object]], source: str) -> None:
        """(image id, place with city, metro, region, country, country_code), from `source`."""
        with self.transaction():
            self.conn.executemany(
                "UPDATE images SET city=?, metro=?, region=?, country=?, country_code=?, place_names=?, "
                "place_source=? WHERE id=?",
                [
                    (p.city, p.metro, p.region, p.country, p.country_code, _place_names(p), source, i)
                    for i, p in items
                ],
            )

    def set_ocr(self, items: Sequence[tuple[int, str]]) -> None:
        """'' marks an image as read with no confident text, so it is not read again."""
        with self.transaction():
            self.conn.executemany("UPDATE images SET ocr_text=? WHERE id=?", [(t, i) for i, t in items])

    def lexical_search(self, text: str, limit: int) -> list[tuple[int, float]]:
        """BM25 (SQLite FTS5) over captions, OCR text and paths: (image id, score), best first.
        Any word may match; captions and OCR text weigh more than path words."""
        words = [w for w in re.findall(r"\w+", text.lower()) if w not in STOPWORDS]
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
        rows = self.conn.execute(
            "SELECT f.rowid, bm25(image_fts, 0.5, 2.0, 1.0) AS s FROM image_fts f JOIN image_vectors v ON "
            "v.image_id = f.rowid "
            "WHERE image_fts MATCH ? ORDER BY s LIMIT ?",
            (match, limit),
        ).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]  # FTS5's bm25 is lower-is-better

    # -- texts ----------------------------------------------------------------------------------
    def add_texts(self, texts: Sequence[str], vectors: np.ndarray, source: str) -> int:
        """Store texts with their vectors; a text already stored from the same source is kept once."""
        added = 0
        with self.transaction():
            for text, vec in zip(texts, vectors):
                cur = self.conn.execute(
                    "INSERT INTO texts(text, source, v) VALUES(?,?,?) ON CONFLICT(text, source) DO NOTHING",
                    (text, source, np.asarray(vec, np.float32).tobytes()),
                )
                added += cur.rowcount
            if added:
                self._bump(Collection.TEXTS)
        return added

    def count_texts(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM texts").fetchone()[0])

    def texts_by_source(self) -> dict[str, list[str]]:
        """Every stored text, grouped by where it came from, in the order stored."""
        out: dict[str, list[str]] = {}
        for text, source in self.conn.execute("SELECT text, source FROM texts ORDER BY id"):
            out.setdefault(source, []).append(text)
        return out

    def get_texts(self, ids: Sequence[int]) -> dict[int, TextRecord]:
        out: dict[int, TextRecord] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(f"SELECT id, text, source FROM texts WHERE id IN ({marks})", chunk):
                out[r[0]] = TextRecord(*r)
        return out

    def text_vectors(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for tid, blob in self.conn.execute(f"SELECT id, v FROM texts WHERE id IN ({marks})", chunk):
                out[int(tid)] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return out


EARTH_KM = 6371.0088  # the Earth's mean radius


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def _filter_sql(filters) -> tuple[str, list]:
    """The WHERE clause (over `images i`) and its arguments for query/filters.py's Filters."""
    where, args = ["i.error IS NULL"], []
    if filters.after is not None:
        where.append("i.taken_at >= ?")
        args.append(filters.after)
    if filters.before is not None:
        where.append("i.taken_at < ?")
        args.append(filters.before)
    if filters.camera:
        where.append("instr(lower(coalesce(i.camera, '')), lower(?)) > 0")
        args.append(filters.camera)
    if filters.folder:  # a folder name anywhere above the file
        where.append("instr(lower(CAST(i.path AS TEXT)), lower(?)) > 0")
        args.append("/" + filters.folder.strip("/") + "/")
    for part in filters.place_parts():  # "Paris, France": each part names one
        where.append("instr(i.place_names, ?) > 0")
        args.append(f"|{fold(part)}|")
    if filters.near is not None:
        (lat, lon), km = filters.near, filters.within_km()
        # a box on the indexed latitude first, then the exact distance on what is in it
        dlat = math.degrees(km / EARTH_KM)
        where.append("i.latitude BETWEEN ? AND ? AND km(i.latitude, i.longitude, ?, ?) <= ?")
        args += [lat - dlat, lat + dlat, lat, lon, km]
    if filters.type:
        exts = {"jpg": ("jpg", "jpeg"), "jpeg": ("jpg", "jpeg"), "tif": ("tif", "tiff")}.get(
            filters.type, (filters.type,)
        )
        where.append("(" + " OR ".join("lower(CAST(i.path AS TEXT)) LIKE ?" for _ in exts) + ")")
        args += [f"%.{e}" for e in exts]
    return " AND ".join(where), args


def fold(text: str) -> str:
    """For matching names as people type them: no case, no accents ("Île-de-France" = "ile-de-france")."""
    decomposed = unicodedata.normalize("NFKD", text.strip().casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _place_names(place) -> str | None:
    """Every name of a place in one column, folded, each between bars: `place:` looks for
    "|name|" in it."""
    names = [fold(n) for n in (place.city, place.metro, place.region, place.country, place.country_code) if n]
    return "|" + "|".join(names) + "|" if names else None


def _km_or_null(lat1, lon1, lat2, lon2) -> float | None:
    return None if None in (lat1, lon1, lat2, lon2) else haversine_km(lat1, lon1, lat2, lon2)


def _text(value: str | None) -> str | bytes | None:
    """A string for SQLite: as it is, or, where it holds a file name that is not valid UTF-8
    (os functions give those as surrogate escapes), its bytes, which the SQL casts to TEXT so that
    the name is kept exactly; connections read them back with surrogateescape."""
    if value is None or value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


class _Transaction:
    """BEGIN IMMEDIATE .. COMMIT, rolled back on error; nests by joining the outer one. A write
    that fails for want of space or permission becomes a StorageError naming `where`."""

    def __init__(self, conn: sqlite3.Connection, where: object = "the catalogue") -> None:
        self.conn, self.where = conn, where
        self.owner = False

    def __enter__(self) -> sqlite3.Connection:
        if not self.conn.in_transaction:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                _raise_clear(self.where, exc)
                raise
            self.owner = True
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.owner:
            return
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.OperationalError as end_exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if exc is None:  # the commit itself failed
                _raise_clear(self.where, end_exc)
                raise
        if isinstance(exc, sqlite3.OperationalError):
            _raise_clear(self.where, exc)


def _raise_clear(where: object, exc: sqlite3.OperationalError) -> None:
    """Raise the clear StorageError for a failed write, if it failed for want of space or rights."""
    clear = storage_error(where, exc)
    if clear is not None:
        raise clear from exc


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
