"""Filters on what the catalogue knows of each image, in one language for every face: inline in a
query (`a dog on a beach after:2023-06 before:2024 camera:canon folder:holidays place:France
type:jpg`), as CLI flags (`--after ...`) and as the API's `filters` object. Dates are YYYY,
YYYY-MM or YYYY-MM-DD (UTC); `after:` includes its day, `before:` excludes it. camera: and
folder: match a part of the value, ignoring case. place: names a town, region or country (or its
two-letter code), whole, ignoring case; "Paris, France" needs both. near:"48.85,2.35" keeps the
photos taken within `within:` (default 10 km; m, km or mi) of that point. An unknown `key:` is an
error, not query words."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone

from ..errors import QueryError

KEYS = ("after", "before", "camera", "folder", "place", "near", "within", "type")
_TOKEN = re.compile(r'^([A-Za-z_]+):("?)(.+)\2$')
DEFAULT_WITHIN_KM = 10.0
_DISTANCE = re.compile(r"^(\d+(?:\.\d+)?)\s*(km|m|mi)?$")
_UNIT_KM = {"km": 1.0, "m": 0.001, "mi": 1.609344}


@dataclass(frozen=True)
class Filters:
    after: float | None = None  # taken at or after (seconds since the epoch)
    before: float | None = None  # taken before
    camera: str | None = None
    folder: str | None = None
    place: str | None = None
    near: tuple[float, float] | None = None  # (latitude, longitude) in degrees
    within: float | None = None  # km from `near`
    type: str | None = None  # file extension, without the dot

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def place_parts(self) -> list[str]:
        return [p.strip() for p in (self.place or "").split(",") if p.strip()]

    def within_km(self) -> float:
        return DEFAULT_WITHIN_KM if self.within is None else self.within

    def checked(self) -> "Filters":
        """These filters, once all their sources are merged; raises for a set that cannot work."""
        if self.within is not None and self.near is None:
            raise QueryError("within: needs a point to measure from: add near:LAT,LON")
        return self

    def merged(self, other: "Filters") -> "Filters":
        """These filters with `other`'s set values on top."""
        return replace(
            self,
            **{f.name: getattr(other, f.name) for f in fields(other) if getattr(other, f.name) is not None},
        )


def parse_date(key: str, text: str) -> float:
    """The start of the year, month or day `text` names, in seconds since the epoch (UTC)."""
    for fmt in ("%Y-%m-%d", "%Y-%m", "%Y"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise QueryError(f"{key}:{text}: give a date as YYYY, YYYY-MM or YYYY-MM-DD")


def parse_point(text: str) -> tuple[float, float]:
    """'48.85,2.35' -> (48.85, 2.35)."""
    try:
        lat, lon = (float(x) for x in text.replace(" ", "").split(","))
    except ValueError:
        lat = lon = float("nan")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise QueryError(f"near:{text}: give latitude,longitude in degrees, e.g. near:48.85,2.35")
    return lat, lon


def parse_distance(text: str) -> float:
    """'20km', '500m', '3mi' or '20' (km) -> km."""
    match = _DISTANCE.match(text.lower().strip())
    if match is None or float(match.group(1)) <= 0:
        raise QueryError(f"within:{text}: give a distance such as 20km, 500m or 3mi")
    return float(match.group(1)) * _UNIT_KM[match.group(2) or "km"]


def filters_from(values: dict[str, str | None]) -> Filters:
    """Filters from key -> text (CLI flags, API fields); unknown keys are an error."""
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise QueryError(f"filters: unknown {', '.join(unknown)}; use {', '.join(KEYS)}")
    out: dict[str, float | str] = {}
    for key, text in values.items():
        if text is None or not str(text).strip():
            continue
        text = str(text).strip()
        if key in ("after", "before"):
            out[key] = parse_date(key, text)
        elif key == "type":
            out[key] = text.lower().lstrip(".")
        elif key == "near":
            out[key] = parse_point(text)
        elif key == "within":
            out[key] = parse_distance(text)
        else:
            out[key] = text
    return Filters(**out)


def split_filters(text: str) -> tuple[str, Filters]:
    """The query words without their `key:value` filter tokens, and those filters."""
    words, found = [], {}
    for token in re.findall(r'\S+:"[^"]*"|\S+', text):
        match = _TOKEN.match(token)
        if match is None or "//" in token:  # plain words, weights like 2:red, URLs
            words.append(token)
            continue
        key = match.group(1).lower()
        if key not in KEYS:
            raise QueryError(
                f"{key}: is not a filter; use {', '.join(k + ':' for k in KEYS)} (or a space after the colon)"
            )
        found[key] = match.group(3)
    return " ".join(words), filters_from(found)


def inline_filters(query):
    """A query (text, list of texts, or anything else the engine takes) without its inline filter
    tokens, and those filters; parts that were only filters are dropped."""
    if isinstance(query, str):
        return split_filters(query)
    if isinstance(query, (list, tuple)) and all(isinstance(q, str) for q in query):
        found, rest = Filters(), []
        for q in query:
            words, more = split_filters(q)
            found = found.merged(more)
            if words:
                rest.append(words)
        return rest, found
    return query, Filters()
