"""Encode query parts, combine them into one vector, rank with the vector index, then explain
each hit: the share of every part in its score, and its confidence."""

from __future__ import annotations

import re
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


MODES = ("vector", "lexical", "fused")
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al.): damps the head of each list


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def search(
    parts: Sequence[QueryPart],
    store: Store,
    encoder,
    collection: str = "images",
    k: int = 10,
    offset: int = 0,
    confidence: ConfidenceModel | None = None,
    max_pixels: int = 89_478_485,
    mode: str = "vector",
) -> SearchResult:
    """Rank a collection for the query parts. For text queries over images, `mode` picks the
    vector ranking, BM25 over captions / OCR text / paths, or both fused by reciprocal rank."""
    if mode not in MODES:
        raise QueryError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    confidence = confidence or ScoreTailConfidence()
    embeddings = encode_parts(parts, encoder, max_pixels)
    query, norm = combine(parts, embeddings)
    index = store.vectors(collection)
    population = len(index)
    if population == 0:
        what = "images: run `viewfinder index DIR` first" if collection == "images" else "texts: add some with `viewfinder texts add FILE`"
        return SearchResult([], True, 0, f"the index holds no {what}")
    catalog = store.catalog
    need = k + offset
    words = " ".join(str(p.value) for p in parts if p.kind == "text" and p.weight > 0)
    lexical_ok = collection == "images" and words and all(p.kind == "text" for p in parts)
    if mode != "vector" and not lexical_ok:
        mode = "vector"  # image parts and text collections have nothing to match lexically
    lexical = catalog.lexical_search(words, max(need * 5, 100)) if mode != "vector" else []
    lex_rank = {i: r for r, (i, _) in enumerate(lexical, start=1)}
    vec_rank: dict[int, int] = {}
    if mode != "lexical":
        _, ids = index.search(query[None, :], need if mode == "vector" else max(need * 5, 100))
        vec_rank = {int(i): r for r, i in enumerate(ids[0], start=1) if i >= 0}
    if mode == "vector":
        ranked = list(vec_rank)
    elif mode == "lexical":
        ranked = list(lex_rank)
    else:
        ranked = [i for i, _ in reciprocal_rank_fusion([list(vec_rank), list(lex_rank)])]

    window = ranked[offset:need]
    dim = embeddings.shape[1]
    vectors = catalog.image_vectors(window, dim) if collection == "images" else catalog.text_vectors(window, dim)
    records = catalog.get_images(window) if collection == "images" else catalog.get_texts(window)
    stats = confidence.fit_query(store.sample(collection) @ query, population)
    top = (catalog.image_vectors if collection == "images" else catalog.text_vectors)(ranked[:1], dim)
    best = float(top[ranked[0]] @ query) if top else 0.0  # the page may start later: abstain judges rank 1
    abstain = confidence.confidence(best, stats) < getattr(confidence, "abstain_below", 0.5) and not lexical

    labels = unique_labels(parts)
    weights = np.array([p.weight for p in parts], np.float32)
    query_words = set(re.findall(r"\w+", words.lower()))
    hits = []
    for rank, item_id in enumerate(window, start=offset + 1):
        rec = records.get(item_id)
        if rec is None or item_id not in vectors:
            continue  # deleted by another process since the index was read
        part_scores = embeddings @ vectors[item_id]
        score = float(query @ vectors[item_id])
        contrib = {lab: float(w * s / norm) for lab, w, s in zip(labels, weights, part_scores)}
        conf = confidence.confidence(score, stats)
        explanation = explain(score, contrib, dict(zip(labels, part_scores.tolist())), conf, stats)
        extra: dict = {}
        if mode != "vector":
            text = " ".join(filter(None, [rec.caption, rec.ocr_text, rec.path])).lower()
            matched = sorted(w for w in query_words if re.search(rf"\b{re.escape(w)}", text))
            extra = {"vector_rank": vec_rank.get(item_id), "lexical_rank": lex_rank.get(item_id), "matched_terms": matched}
            if matched:
                explanation += f"; caption/text/path words matched: {', '.join(matched)} (lexical rank {lex_rank.get(item_id)})"
        hit = SearchHit(rank=rank, id=item_id, score=score, confidence=conf, abstain=abstain, contributions=contrib,
                        explanation=explanation, kind="image" if collection == "images" else "text", extra=extra)
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
