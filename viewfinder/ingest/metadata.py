"""What a photo's header says about it: when it was taken (with its time zone where the camera
wrote one), which camera and lens, and where (GPS). Read with Pillow's EXIF reader from the header
only (no pixels are decoded), for new files after each index run and, once, for the files of an
index made before these fields existed (`fill_metadata`).

A photo without a date taken gets its file's modification time, marked "file" (as Immich does),
so that date filters still place it."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from PIL import Image

from .places import fill_places

log = logging.getLogger(__name__)

# EXIF tags (Exif 2.32): IFD0, the Exif sub-IFD and the GPS sub-IFD
MAKE, MODEL, ORIENTATION = 0x010F, 0x0110, 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATE_TAKEN, OFFSET_TAKEN, LENS_MODEL = 0x9003, 0x9011, 0xA434
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4


@dataclass(frozen=True)
class PhotoMeta:
    taken_at: float | None  # seconds since the epoch, UTC where the offset is known, else local time as UTC
    taken_source: str  # "exif" or "file" (no date taken: the file's modification time)
    camera: str | None = None  # "Make Model", as the camera wrote them
    lens: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    taken_offset: int | None = None  # the camera's UTC offset in minutes, where it wrote one
    orientation: int | None = None  # EXIF 1-8 (6 and 8: a phone's quarter turns; applied when decoding)


def _text(value) -> str | None:
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = text.replace("\x00", "").strip()
    return text or None


def _degrees(dms, ref) -> float | None:
    try:
        d, m, s = (float(x) for x in dms)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60 + s / 3600
    return -value if _text(ref) in ("S", "W") else value


def _taken(exif_ifd) -> tuple[float | None, int | None]:
    """(date taken in seconds since the epoch, the UTC offset in minutes where written)."""
    raw = _text(exif_ifd.get(DATE_TAKEN))
    if not raw:
        return None, None
    try:
        when = datetime.strptime(raw[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None, None
    offset = _text(exif_ifd.get(OFFSET_TAKEN))
    minutes = None
    if offset and len(offset) == 6 and offset[0] in "+-" and offset[1:3].isdigit() and offset[4:6].isdigit():
        minutes = (1 if offset[0] == "+" else -1) * (int(offset[1:3]) * 60 + int(offset[4:6]))
    tz = timezone(timedelta(minutes=minutes)) if minutes is not None else timezone.utc
    return when.replace(tzinfo=tz).timestamp(), minutes


def read_metadata(path: Path) -> PhotoMeta:
    """The header's facts about the photo at `path`; never raises for a bad or missing header."""
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            sub = exif.get_ifd(EXIF_IFD)
            gps = exif.get_ifd(GPS_IFD)
            make, model = _text(exif.get(MAKE)), _text(exif.get(MODEL))
            if make and model and model.lower().startswith(make.lower()):
                camera = model  # not "Canon Canon EOS 80D"
            else:
                camera = " ".join(p for p in (make, model) if p)
            taken, offset = _taken(sub)
            lat = _degrees(gps.get(GPS_LAT), gps.get(GPS_LAT_REF)) if gps else None
            lon = _degrees(gps.get(GPS_LON), gps.get(GPS_LON_REF)) if gps else None
            turn = exif.get(ORIENTATION)
            orientation = turn if isinstance(turn, int) and 1 <= turn <= 8 else None
            lens = _text(sub.get(LENS_MODEL))
            meta = PhotoMeta(taken, "exif", camera or None, lens, lat, lon, offset, orientation)
    except Exception as exc:  # a header the reader cannot parse costs the metadata, not the image
        log.debug("%s: no metadata read (%s)", path, exc)
        meta = PhotoMeta(None, "exif")
    if meta.taken_at is None:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = None
        meta = replace(meta, taken_at=mtime, taken_source="file")
    return meta


def fill_metadata(catalog, threads: int = 8, chunk: int = 2000) -> int:
    """Read the headers of every indexed image that has no metadata yet, then name the places of
    new GPS coordinates (ingest/places.py); returns how many headers were read. Each chunk is
    committed, so an interrupted backfill of a large library keeps what it read."""
    todo = catalog.images_without_metadata()
    with ThreadPoolExecutor(threads) as pool:  # header reads wait on the disk, not the CPU
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            metas = pool.map(lambda item: read_metadata(Path(item[1])), part)
            catalog.set_metadata([(image_id, meta) for (image_id, _), meta in zip(part, metas)])
    fill_places(catalog)
    return len(todo)
