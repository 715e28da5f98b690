"""Turn what a user typed (or uploaded) into query parts, deciding each part's modality here
and nowhere else."""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, Union

from ..errors import QueryError
from ..images import EXTENSIONS

MAX_WEIGHT = 100.0  # larger weights only make one part drown the others
_WEIGHT = re.compile(r"^([+-]?\d+(?:\.\d+)?):(.+)$", re.S)
# A new part starts at a space followed by +word, -word or N:word ("red car -blurry 2:sunset").
_PART_START = re.compile(r"\s+(?=[+-]\S|[+-]?\d+(?:\.\d+)?:\S)")


@dataclass(frozen=True)
class QueryPart:
    kind: str  # "text" | "image"
    value: str | bytes  # the text, a path / URL / data URI, or raw image bytes
    weight: float = 1.0
    label: str = ""  # how the part is named in explanations

    def __post_init__(self) -> None:
        if self.kind not in ("text", "image"):
            raise QueryError(f"query part kind {self.kind!r}: use 'text' or 'image'")
        if not (math.isfinite(self.weight) and abs(self.weight) <= MAX_WEIGHT):
            raise QueryError(
                f"weight of {self.label or 'a query part'!r}: must be a number from "
                f"-{MAX_WEIGHT:g} to {MAX_WEIGHT:g}"
            )
        if isinstance(self.value, str):
            check_text(self.value, "query")


def check_text(text: str, field: str) -> str:
    """Refuse strings that are not Unicode text (lone surrogates, which JSON escapes can carry):
    the tokenizers cannot encode them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise QueryError(
            f"{field}: not valid Unicode text ({exc.reason} at {exc.start}); send UTF-8 text"
        ) from exc
    return text


def detect_kind(value: str | bytes, local: bool = True) -> str:
    """Raw bytes, an existing file, an http(s) URL or a data URI is an image; the rest is text.
    With local=False (requests from the network) only bytes and data URIs are images: a path or
    URL typed by a remote user must never reach the file system or another server."""
    if isinstance(value, (bytes, bytearray)):
        return "image"
    v = value.strip()
    if v.startswith("data:image/"):
        return "image"
    if not local:
        return "text"
    if v.startswith(("http://", "https://")):
        return "image"
    try:
        return "image" if Path(v).expanduser().is_file() else "text"
    except OSError:  # a name too long for the file system is text
        return "text"


def _looks_like_path(text: str) -> bool:
    """One word that names an image file or starts like a path (`~/a.png`, `./b`, `/c/d.jpg`)."""
    if any(c.isspace() for c in text):
        return False
    return text.startswith(("/", "./", "../", "~/")) or Path(text).suffix.lower() in EXTENSIONS


def parse_part(raw: str | bytes, weight: float | None = None, local: bool = True) -> QueryPart:
    """`2:red car` (weight 2), `-blurry` (weight -1), `+sunset`, or plain text / image."""
    if isinstance(raw, (bytes, bytearray)):
        return QueryPart("image", bytes(raw), 1.0 if weight is None else weight, "uploaded image")
    text = raw.strip()
    if not text:
        raise QueryError("empty query part: give some text or an image")
    w = 1.0
    m = _WEIGHT.match(text)
    if m and not (local and Path(text).expanduser().exists()):
        w, text = float(m.group(1)), m.group(2).strip()
    elif text[0] in "+-" and len(text) > 1 and not (local and Path(text).exists()):
        w, text = (-1.0 if text[0] == "-" else 1.0), text[1:].strip()
    if weight is not None:
        w = weight
    kind = detect_kind(text, local)
    if kind == "text" and local and _looks_like_path(text):
        raise QueryError(
            f"{text}: no such image file; check the path, or search for these words with --as-text "
            "(from Python: a part {'text': ...})"
        )
    label = (
        Path(text).name
        if kind == "image" and not text.startswith("data:")
        else "image"
        if kind == "image"
        else text[:80]
    )
    return QueryPart(kind, text, w, label)


def split_parts(text: str, local: bool = True) -> list[str]:
    """One typed string -> its parts; an existing file path is never split."""
    if local and detect_kind(text, local) == "image":
        return [text]
    return [p for p in _PART_START.split(text.strip()) if p]


def part_from_mapping(i: int, item: Mapping, local: bool = True) -> QueryPart:
    """`{"text": ..., "weight": w}` or `{"image": <data URI>, "weight": w}` (the API's list form)."""
    text, image, weight = item.get("text"), item.get("image"), item.get("weight", 1.0)
    if bool(text) == bool(image):
        raise QueryError(f"query[{i}]: give exactly one of 'text' or 'image'")
    if image and detect_kind(image, local) != "image":
        raise QueryError(f"query[{i}].image: must be a data URI (data:image/...;base64,...)")
    if text:
        return QueryPart("text", text, weight, text[:80])
    return QueryPart("image", image, weight, f"image {i + 1}")


QueryInput = Union[str, bytes, Sequence[Union[str, bytes, Mapping, QueryPart]]]


def parse_query(
    parts: QueryInput, image: str | bytes | None = None, text_weight: float | None = None, local: bool = True
) -> list[QueryPart]:
    """All parts of a query: strings (split into weighted parts), raw image bytes, mappings of
    the API's list form, or parts already parsed. With `image` (hybrid search), text parts share
    `text_weight` of the total and the image the rest, so the slider means the same whatever the
    number of parts (without an image part it changes nothing). With local=False (remote
    requests) only bytes and data URIs are images."""
    items = [parts] if isinstance(parts, (str, bytes)) else list(parts)
    out: list[QueryPart] = []
    for i, item in enumerate(items):
        if isinstance(item, QueryPart):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(part_from_mapping(i, item, local))
        elif isinstance(item, str):
            out.extend(parse_part(piece, local=local) for piece in split_parts(item, local) if piece.strip())
        else:
            out.append(parse_part(item, local=local))
    if image is not None:
        out.append(parse_part(image, local=local))
        if out[-1].kind != "image" and local:
            raise QueryError(
                f"image {str(image)[:60]!r}: no such image file; give a path, URL or data URI of an image"
            )
        if out[-1].kind != "image":
            raise QueryError("image: must be a data URI (data:image/...;base64,...) or an uploaded file")
    if text_weight is not None and any(p.kind == "image" for p in out):
        out = share_weights(out, text_weight)
    if not out:
        raise QueryError("the query is empty: give text, an image, or both")
    if all(p.weight <= 0 for p in out):
        raise QueryError("the query has only negative parts: add something to look for")
    return out


def share_weights(parts: list[QueryPart], text_weight: float) -> list[QueryPart]:
    """Scale the positive parts so that the texts together weigh `text_weight` and the images the rest."""
    if not 0.0 <= text_weight <= 1.0:
        raise QueryError(f"text_weight {text_weight}: must be between 0 and 1")
    texts = [p for p in parts if p.kind == "text" and p.weight > 0]
    images = [p for p in parts if p.kind == "image" and p.weight > 0]
    scaled = []
    for p in parts:
        group = texts if p.kind == "text" else images
        share = text_weight if p.kind == "text" else 1.0 - text_weight
        weight = p.weight * share / max(len(group), 1) if p.weight > 0 else p.weight
        scaled.append(QueryPart(p.kind, p.value, weight, p.label))
    return scaled


def load_image_part(part: QueryPart, max_pixels: int):
    """The PIL image of an image part (file, URL, data URI or bytes)."""
    from ..images import decode_bytes, read_image

    value = part.value
    if isinstance(value, bytes):
        return decode_bytes(value, "uploaded image", max_pixels).image
    if value.startswith("data:"):
        try:
            payload = base64.b64decode(value.split(",", 1)[1], validate=False)
        except (IndexError, ValueError) as exc:
            raise QueryError("data URI: not base64 image data") from exc
        return decode_bytes(payload, "data URI", max_pixels).image
    if value.startswith(("http://", "https://")):
        import urllib.request

        try:
            with urllib.request.urlopen(value, timeout=20) as resp:
                payload = resp.read(64 << 20)
        except OSError as exc:
            raise QueryError(
                f"{value}: could not download the image ({exc}); save it and pass the file"
            ) from exc
        return decode_bytes(payload, value, max_pixels).image
    return read_image(Path(value).expanduser(), max_pixels).image
