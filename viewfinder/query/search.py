"""Encode query parts, combine them into one vector, rank with the vector index, then explain
each hit: the share of every part in its score, and its confidence."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import QueryError
from ..images import read_image
from ..store import Collection, ImageRecord, Store
from .confidence import (
    SELF_SCORE,
    ConfidenceModel,
    HitContext,
    QueryStats,
    ScoreTailConfidence,
    query_stats,
    verdict,
)
from .duplicates import LIKENESS, likeness
from .filters import Filters
from .parse import QueryPart, load_image_part
from .regions import Heatmap, region_heatmap
from .results import SearchHit, SearchResult


def encode_parts(parts: Sequence[QueryPart], encoder, max_pixels: int) -> np.ndarray:
    """One normalised embedding per part, in order (texts batched together)."""
    out = np.zeros((len(parts), 0), np.float32)
    rows: dict[int, np.ndarray] = {}
    texts = [(i, p) for i, p in enumerate(parts) if p.kind == "text"]
    if texts:
        vecs = encoder.encode_texts([str(p.value) for _, p in texts])
        rows.update({i: v for (i, _), v in zip(texts, vecs)})
    images = [(i, p) for i, p in enumerate(parts) if p.kind == "image"]
    if images:
        vecs = encoder.encode_images([load_image_part(p, max_pixels) for _, p in images])
        rows.update({i: v for (i, _), v in zip(images, vecs)})
    if rows:
        out = np.stack([rows[i] for i in range(len(parts))])
    return out


def combine(parts: Sequence[QueryPart], embeddings: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted sum of the part embeddings, normalised. Returns (query vector, norm)."""
    weights = np.array([p.weight for p in parts], np.float32)
    combined = weights @ embeddings
    norm = float(np.linalg.norm(combined))
    if norm < 1e-6:
        raise QueryError("the query parts cancel each other out: change their weights")
    return combined / norm, norm


def unique_labels(parts: Sequence[QueryPart]) -> list[str]:
    seen: dict[str, int] = {}
    labels = []
    for p in parts:
        base = ("-" if p.weight < 0 else "") + (p.label or p.kind)
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base} #{seen[base]}")
    return labels


MODES = ("vector", "lexical", "fused")
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al.): damps the head of each list


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


@dataclass
class Ranking:
    """The ordered candidate ids of one search (one more than asked for, where there is one: the
    last hit's confidence reads its margin to the next), with each id's place in the vector and
    lexical lists."""

    ids: list[int]
    vector_rank: dict[int, int]
    lexical_rank: dict[int, int]
    mode: str


def positive_words(parts: Sequence[QueryPart]) -> str:
    return " ".join(str(p.value) for p in parts if p.kind == "text" and p.weight > 0)


EXACT_SUBSET = 2000  # filtered searches over at most this many images score them all directly


def rank(
    parts: Sequence[QueryPart],
    query: np.ndarray,
    store: Store,
    collection: Collection,
    need: int,
    mode: str,
    allowed: np.ndarray | None = None,
) -> Ranking:
    """Order the collection for the query: by vector, by BM25 over captions / OCR text / paths,
    or both fused by reciprocal rank. Queries with image parts and text collections have nothing
    to match lexically, so they always rank by vector."""
    need += 1
    words = positive_words(parts)
    if collection != Collection.IMAGES or not words or any(p.kind != "text" for p in parts):
        mode = "vector"
    lexical = store.catalog.lexical_search(words, max(need * 5, 100)) if mode != "vector" else []
    if allowed is not None and lexical:  # vector-only searches need no set of 500,000 ids
        keep = set(allowed.tolist())
        lexical = [(i, score) for i, score in lexical if i in keep]
    lex_rank = {i: r for r, (i, _) in enumerate(lexical, start=1)}
    vec_rank: dict[int, int] = {}
    if mode != "lexical":
        want = need if mode == "vector" else max(need * 5, 100)
        if allowed is not None and len(allowed) <= EXACT_SUBSET:
            ids = [exact_top(query, allowed, store, collection, want)]
        else:
            _, ids = store.vectors(collection).search(query[None, :], want, allowed=allowed)
        vec_rank = {int(i): r for r, i in enumerate(ids[0], start=1) if i >= 0}
    if mode == "vector":
        ranked = list(vec_rank)
    elif mode == "lexical":
        ranked = list(lex_rank)
    else:
        ranked = [i for i, _ in reciprocal_rank_fusion([list(vec_rank), list(lex_rank)])]
    return Ranking(ranked, vec_rank, lex_rank, mode)


def exact_top(query: np.ndarray, ids: np.ndarray, store: Store, collection: Collection, k: int) -> list[int]:
    """The k best of `ids` by exact cosine, read from the catalogue (small filtered subsets)."""
    vectors = store.catalog.vectors_of(collection, ids.tolist(), len(query))
    present = [i for i in ids.tolist() if i in vectors]
    if not present:
        return []
    scores = np.stack([vectors[i] for i in present]) @ query
    return [present[j] for j in np.argsort(-scores)[:k]]


def direction_of(parts: Sequence[QueryPart], collection: Collection) -> str:
    """ "text->image", "image->image", "image->text", "text->text", or "mixed->..." for a query
    with both text and image parts (no calibration is fitted for those yet: they get the
    score-tail model)."""
    kinds = {p.kind for p in parts}
    source = "mixed" if len(kinds) > 1 else "image" if "image" in kinds else "text"
    return f"{source}->{'image' if collection == Collection.IMAGES else 'text'}"


def judge(
    query: np.ndarray,
    ranking: Ranking,
    vectors: dict[int, np.ndarray],
    store: Store,
    collection: Collection,
    confidence: ConfidenceModel,
    direction: str,
) -> tuple[QueryStats, float, bool]:
    """This query's score statistics over the collection, the rank-1 hit's score, and whether to
    abstain (`vectors` holds the first two ranked ids' vectors). Abstention judges the rank-1 hit
    even when the page starts later; a lexical match never abstains."""
    sample = store.sample(collection) @ query
    if direction == "image->image":
        # the query's own image, if stored, is not part of what it is compared with: the
        # calibration left it out (scripts/fit_confidence.py), and its 1.0 would widen the spread
        sample = sample[sample < SELF_SCORE]
    stats = query_stats(sample, len(store.vectors(collection)))
    scores = [float(vectors[i] @ query) for i in ranking.ids[:2] if i in vectors]
    if not scores:
        return stats, 0.0, True
    top = HitContext(scores[0], 1, scores[0], scores[1] if len(scores) > 1 else None, direction)
    abstain = confidence.abstains(top, stats) and not ranking.lexical_rank
    return stats, scores[0], abstain


@dataclass
class ScoredQuery:
    """What every hit of one search is explained against, worked out once per search."""

    embeddings: np.ndarray  # one row per query part
    query: np.ndarray  # their weighted, normalised sum
    norm: float  # the norm of that sum before normalising
    labels: list[str]  # the parts' names in explanations
    weights: np.ndarray
    words: set[str]  # the positive text parts' words (lexical matches)
    stats: QueryStats
    confidence: ConfidenceModel
    abstain: bool
    ranking: Ranking
    direction: str
    top_score: float


def hit_context(rank_no: int, score: float, next_score: float | None, q: ScoredQuery) -> HitContext:
    return HitContext(score, rank_no, max(q.top_score, score), next_score, q.direction)


def make_hit(
    rank_no: int, item_id: int, record, vector: np.ndarray, next_score: float | None, q: ScoredQuery
) -> SearchHit:
    """One hit: its score split into one share per query part, its confidence and explanation."""
    part_scores = q.embeddings @ vector
    score = float(q.query @ vector)
    contrib = {lab: float(w * s / q.norm) for lab, w, s in zip(q.labels, q.weights, part_scores)}
    conf = q.confidence.confidence(hit_context(rank_no, score, next_score, q), q.stats)
    explanation = explain(score, contrib, dict(zip(q.labels, part_scores.tolist())), conf, q.stats)
    extra: dict = {}
    if q.ranking.mode != "vector":
        text = " ".join(filter(None, [record.caption, record.ocr_text, record.path])).lower()
        matched = sorted(w for w in q.words if re.search(rf"\b{re.escape(w)}", text))
        lex = q.ranking.lexical_rank.get(item_id)
        extra = {
            "vector_rank": q.ranking.vector_rank.get(item_id),
            "lexical_rank": lex,
            "matched_terms": matched,
        }
        if matched:
            explanation += f"; caption/text/path words matched: {', '.join(matched)} (lexical rank {lex})"
    is_image = isinstance(record, ImageRecord)
    hit = SearchHit(
        rank=rank_no,
        id=item_id,
        score=score,
        confidence=conf,
        abstain=q.abstain,
        contributions=contrib,
        explanation=explanation,
        kind="image" if is_image else "text",
        extra=extra,
        verdict=verdict(conf, q.abstain),
    )
    if is_image:
        hit.path, hit.caption = record.path, record.caption
        hit.caption_confidence = record.caption_confidence
        if q.direction == "image->image":
            hit.likeness = likeness(score)
            if hit.likeness:
                hit.explanation += f"; {hit.likeness} (cosine >= {LIKENESS[hit.likeness]:.2f})"
    else:
        hit.text, hit.source = record.text, record.source
    return hit


def search(
    parts: Sequence[QueryPart],
    store: Store,
    encoder,
    *,
    max_pixels: int,
    collection: Collection = Collection.IMAGES,
    k: int = 10,
    offset: int = 0,
    confidence: ConfidenceModel | None = None,
    mode: str = "vector",
    regions: bool = False,
    filters: Filters | None = None,
) -> SearchResult:
    """Rank `collection` for the query parts and explain the hits `offset`..`offset + k`.

    `mode`: "vector", "lexical" or "fused" (see `rank`). `max_pixels` bounds image parts.
    `regions`: also a heatmap of where each image hit matches (10 image encodings a hit with mini,
    65 by occlusion for other models)."""
    if mode not in MODES:
        raise QueryError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    confidence = confidence or ScoreTailConfidence()
    embeddings = encode_parts(parts, encoder, max_pixels)
    query, norm = combine(parts, embeddings)
    population = len(store.vectors(collection))
    if population == 0:
        what = (
            "images: run `viewfinder index DIR` first"
            if collection == Collection.IMAGES
            else "texts: add some with `viewfinder texts add FILE`"
        )
        return SearchResult([], True, 0, f"the index holds no {what}")
    allowed = None
    if filters and collection == Collection.IMAGES:
        allowed = store.catalog.filter_ids(filters)
        if len(allowed) == 0:
            unread = store.catalog.count_without_metadata()
            note = (
                f" ({unread} images have no date or camera read yet: `viewfinder index` their folder "
                "once, which reads only headers)"
                if unread
                else ""
            )
            return SearchResult([], False, population, "no image passes the filters" + note)
    ranking = rank(parts, query, store, collection, k + offset, mode, allowed)
    window = ranking.ids[offset : k + offset]
    dim = embeddings.shape[1]
    # one read for the page (and the hit after it) and for the top two, which judge() reads
    wanted = list(dict.fromkeys(ranking.ids[:2] + ranking.ids[offset : k + offset + 1]))
    vectors = store.catalog.vectors_of(collection, wanted, dim)
    records = store.catalog.records_of(collection, window)
    direction = direction_of(parts, collection)
    stats, top_score, abstain = judge(query, ranking, vectors, store, collection, confidence, direction)
    scored = ScoredQuery(
        embeddings,
        query,
        norm,
        unique_labels(parts),
        np.array([p.weight for p in parts], np.float32),
        set(re.findall(r"\w+", positive_words(parts).lower())),
        stats,
        confidence,
        abstain,
        ranking,
        direction,
        top_score,
    )
    present = [i for i in ranking.ids[offset : k + offset + 1] if i in vectors]
    scores = {i: float(vectors[i] @ query) for i in present}
    following = dict(zip(present, [scores[i] for i in present[1:]] + [None]))
    hits = [
        make_hit(rank_no, item_id, records[item_id], vectors[item_id], following[item_id], scored)
        for rank_no, item_id in enumerate(window, start=offset + 1)
        if item_id in records
        and item_id in vectors  # else deleted by another process since the index was read
    ]
    if collection == Collection.IMAGES and hits and store.catalog.count_texts():
        attach_best_texts(hits, vectors, store)
    if regions and collection == Collection.IMAGES:
        for hit in hits:
            hit.heatmap = image_heatmap(Path(hit.path or ""), query, encoder, max_pixels).to_dict()
    message = (
        "No good match: nothing in this collection looks like the query (the best hit is no stronger "
        "than what collections without the query's subject give)"
        if abstain
        else ""
    )
    return SearchResult(hits, abstain, population, message)


HEATMAP_SIDE = 512  # the image is shrunk to this before the heatmap passes: the model sees 224 px


def image_heatmap(path: Path, query: np.ndarray, encoder, max_pixels: int) -> Heatmap:
    """Where the image at `path` matches the unit query vector (query/regions.py)."""
    image = read_image(path, max_pixels, draft_size=HEATMAP_SIDE).image
    image.thumbnail((HEATMAP_SIDE, HEATMAP_SIDE))
    return region_heatmap(encoder, image, query)


def attach_best_texts(hits: list[SearchHit], vectors: dict[int, np.ndarray], store: Store) -> None:
    """Name each image hit's best matching stored text (alt text for images without a caption)."""
    _, ids = store.vectors(Collection.TEXTS).search(np.stack([vectors[h.id] for h in hits]), 1)
    texts = store.catalog.get_texts([int(i) for i in ids[:, 0] if i >= 0])
    for hit, tid in zip(hits, ids[:, 0]):
        if int(tid) in texts:
            hit.best_text = texts[int(tid)].text


def explain(
    score: float, contributions: dict[str, float], part_scores: dict[str, float], conf: float, stats
) -> str:
    parts = " ".join(
        f"{'+' if c >= 0 else '-'} {abs(c):.3f} from '{lab}' (cos {part_scores[lab]:.3f})"
        for lab, c in contributions.items()
    )
    return (
        f"score {score:.3f} = {parts.lstrip('+ ')}; {stats.z(score):.1f} std above this query's mean "
        f"{stats.mean:.3f} over the collection (std {stats.std:.3f}, N={stats.population}) -> confidence "
        f"{conf:.2f}"
    )
