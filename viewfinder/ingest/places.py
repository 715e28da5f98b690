"""Place names for photos with GPS coordinates, offline: the nearest of GeoNames' towns of 1,000
people or more (city, region, country), from the `reverse_geocode` package, which ships that data
(GeoNames, CC BY 4.0) and looks it up in a k-d tree. Nothing is downloaded.

Point-based, so it names the nearest town, not the one whose border holds the point: a photo in
London's Lambeth is in "Lambeth". So each place also keeps the nearest big city (`METRO_PEOPLE`
or more, within `METRO_KM`), and `place:London` finds it. A photo further than `MAX_KM` from any
town (at sea, in a desert) gets no place rather than a wrong one.
Looked up for new files after each index run and, once, for an index made before these fields
existed (`fill_places`): from the stored coordinates, without opening a file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from ..errors import QueryError
from ..store.catalog import haversine_km

log = logging.getLogger(__name__)

MAX_KM = 50.0
METRO_PEOPLE, METRO_KM = 250_000, 30.0
SOURCE = "geonames"  # place_source of an image whose coordinates were looked up
INSTALL = "pip install 'viewfinder[places]' (reverse_geocode, which ships GeoNames' place names)"


@dataclass(frozen=True)
class Place:
    city: str | None
    metro: str | None  # the big city around it, where that is not the town itself
    region: str | None
    country: str | None
    country_code: str | None


NOWHERE = Place(None, None, None, None, None)


def available() -> bool:
    try:
        import reverse_geocode  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> None:
    """Raise a clear error where place names cannot be looked up."""
    if not available():
        raise QueryError(f"place: needs offline place names; {INSTALL}")


def places_of(coords: Sequence[tuple[float, float]]) -> list[Place]:
    """The place of each (latitude, longitude); NOWHERE for a point over MAX_KM from any town."""
    if not coords:
        return []
    import reverse_geocode  # loads its 3 MB table once (about 1 s)

    coords = list(coords)
    towns = reverse_geocode.search(coords)
    cities = reverse_geocode.search(coords, min_population=METRO_PEOPLE)
    out = []
    for (lat, lon), town, city in zip(coords, towns, cities):
        if haversine_km(lat, lon, town["latitude"], town["longitude"]) > MAX_KM:
            out.append(NOWHERE)
            continue
        metro = (
            city["city"] if haversine_km(lat, lon, city["latitude"], city["longitude"]) <= METRO_KM else None
        )
        out.append(
            Place(
                town.get("city") or None,
                metro if metro != town.get("city") else None,
                town.get("state") or None,
                town.get("country") or None,
                town.get("country_code") or None,
            )
        )
    return out


def fill_places(catalog, chunk: int = 20_000) -> int:
    """Name the places of the indexed images whose coordinates have not been looked up; returns
    how many were looked up (0 without the place data: dates and cameras work without it)."""
    todo = catalog.images_without_place()
    if not todo:
        return 0
    if not available():
        log.info("%d photos have GPS coordinates but no place names: %s", len(todo), INSTALL)
        return 0
    for i in range(0, len(todo), chunk):
        part = todo[i : i + chunk]
        places = places_of([(lat, lon) for _, lat, lon in part])
        catalog.set_places([(image_id, place) for (image_id, _, _), place in zip(part, places)], SOURCE)
    return len(todo)
