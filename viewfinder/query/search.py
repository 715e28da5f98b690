"""Encode query parts, combine them into one vector, rank with the vector index, then explain
each hit: the share of every part in its score, and its confidence."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import QueryError
from ..store import Store
from .confidence import ConfidenceModel, ScoreTailConfidence
from .parse import QueryPart, load_image_part
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


def search(
    parts: Sequence[QueryPart],
    store: Store,
    encoder,
    collection: str = "images",
    k: int = 10,
    offset: int = 0,
    confidence: ConfidenceModel | None = None,
    max_pixels: int = 89_478_485,
) -> SearchResult:
    confidence = confidence or ScoreTailConfidence()
    embeddings = encode_parts(parts, encoder, max_pixels)
    query, norm = combine(parts, embeddings)
    index = store.vectors(collection)
    population = len(index)
    if population == 0:
        what = "images: run `viewfinder index DIR` first" if collection == "images" else "texts: add some with `viewfinder texts add FILE`"
        return SearchResult([], True, 0, f"the index holds no {what}")
    scores, ids = index.search(query[None, :], k + offset)
    scores, ids = scores[0], ids[0]
    stats = confidence.fit_query(store.sample(collection) @ query, population)
    top_conf = confidence.confidence(float(scores[0]), stats) if len(scores) else 0.0
    abstain = top_conf < getattr(confidence, "abstain_below", 0.5)

    window = [(float(s), int(i)) for s, i in list(zip(scores, ids))[offset:] if i >= 0]
    hit_ids = [i for _, i in window]
    dim = embeddings.shape[1]
    catalog = store.catalog
    vectors = catalog.image_vectors(hit_ids, dim) if collection == "images" else catalog.text_vectors(hit_ids, dim)
    records = catalog.get_images(hit_ids) if collection == "images" else catalog.get_texts(hit_ids)
    labels = unique_labels(parts)
    weights = np.array([p.weight for p in parts], np.float32)
    hits = []
    for rank, (score, item_id) in enumerate(window, start=offset + 1):
        rec = records.get(item_id)
        if rec is None or item_id not in vectors:
            continue  # deleted by another process since the index was read
        part_scores = embeddings @ vectors[item_id]
        contrib = {lab: float(w * s / norm) for lab, w, s in zip(labels, weights, part_scores)}
        conf = confidence.confidence(score, stats)
        hit = SearchHit(
            rank=rank, id=item_id, score=score, confidence=conf, abstain=abstain, contributions=contrib,
            explanation=explain(score, contrib, dict(zip(labels, part_scores.tolist())), conf, stats),
            kind="image" if collection == "images" else "text",
        )
        if collection == "images":
            hit.path, hit.caption = rec.path, rec.caption
        else:
            hit.text, hit.source = rec.text, rec.source
        hits.append(hit)
    if collection == "images" and hits and catalog.count_texts():
        attach_best_texts(hits, vectors, store)
    message = "No good match: even the best hit is not clearly better than chance in this collection" if abstain else ""
    return SearchResult(hits, abstain, population, message)


def attach_best_texts(hits: list[SearchHit], vectors: dict[int, np.ndarray], store: Store) -> None:
    """Name each image hit's best matching stored text (alt text for images without a caption)."""
    _, ids = store.vectors("texts").search(np.stack([vectors[h.id] for h in hits]), 1)
    texts = store.catalog.get_texts([int(i) for i in ids[:, 0] if i >= 0])
    for hit, tid in zip(hits, ids[:, 0]):
        if int(tid) in texts:
            hit.best_text = texts[int(tid)].text


def explain(score: float, contributions: dict[str, float], part_scores: dict[str, float], conf: float, stats) -> str:
    parts = " ".join(f"{'+' if c >= 0 else '-'} {abs(c):.3f} from '{lab}' (cos {part_scores[lab]:.3f})" for lab, c in contributions.items())
    return (f"score {score:.3f} = {parts.lstrip('+ ')}; {stats.z(score):.1f} std above this query's mean "
            f"{stats.mean:.3f} over the collection (std {stats.std:.3f}, N={stats.population}) -> confidence {conf:.2f}")
