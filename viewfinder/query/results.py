"""What a search returns: hits with their score, its parts, confidence and explanation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import shown_path

# A vocabulary caption below this confidence is not used as alt text (the file name and the best
# matching stored text are): python scripts/eval_captions.py --dataset gcompris measured
# the share of captions that name their image's subject at each confidence (docs/confidence.md).
ALT_TEXT_MIN = 0.2


def alt_text(
    image_id: int,
    path: str | None,
    caption: str | None,
    caption_confidence: float | None,
    best_text: str | None = None,
) -> str:
    """An image's alt text: its caption when there is a sure one, else the file name and the best
    matching stored text (never empty)."""
    if caption and (caption_confidence is None or caption_confidence >= ALT_TEXT_MIN):
        return caption
    name = shown_path(Path(path or "").name) or f"image {image_id}"
    return f"{name}: {best_text}" if best_text else name


@dataclass
class SearchHit:
    rank: int
    id: int
    score: float  # cosine similarity between the combined query and the item
    confidence: float  # in [0, 1], see query/confidence.py
    abstain: bool  # True on every hit when even the best one is not a plausible match
    contributions: dict[str, float]  # query part label -> its share of the score (they sum to score)
    explanation: str
    kind: str  # "image" | "text"
    path: str | None = None
    text: str | None = None
    caption: str | None = None
    caption_confidence: float | None = None  # the captioner's, where it gives one
    source: str | None = None  # for text hits: where the text came from
    best_text: str | None = None  # for image hits: the stored text that fits the image best
    heatmap: dict | None = None  # where asked: query/regions.py Heatmap.to_dict()
    verdict: str = ""  # the confidence in words (query/confidence.py `verdict`)
    # image->image hits: "near-duplicate" or "same scene" at `viewfinder duplicates`' thresholds
    likeness: str | None = None
    extra: dict = field(default_factory=dict)

    def alt_text(self) -> str:
        """For image hits: see `alt_text`."""
        return alt_text(self.id, self.path, self.caption, self.caption_confidence, self.best_text)

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.path is not None:
            out["path"] = shown_path(self.path)
        if self.kind == "image":
            out["alt"] = self.alt_text()
        return out


@dataclass
class SearchResult:
    hits: list[SearchHit]
    abstained: bool
    collection_size: int
    message: str = ""

    def to_dict(self) -> dict:
        return {
            "hits": [h.to_dict() for h in self.hits],
            "abstained": self.abstained,
            "collection_size": self.collection_size,
            "message": self.message,
        }


@dataclass
class DuplicateGroup:
    """Images that `viewfinder duplicates` put together: at `level` "exact" the same bytes; at
    "near" or "similar" joined by cosine similarities of at least `threshold`, the weakest of
    the links that joined them being `score`."""

    level: str
    score: float
    threshold: float | None
    ids: list[int]
    paths: list[str]

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "images": [{"id": i, "path": shown_path(p)} for i, p in zip(self.ids, self.paths)],
        }
