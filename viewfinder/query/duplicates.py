"""Duplicate groups of an image collection, at three levels:

- exact: the same bytes (the catalogue's content hash);
- near: the same picture re-encoded, resized, cropped a little or turned by EXIF: image vectors at
  cosine >= NEAR_THRESHOLD;
- similar: the same scene, another shot: cosine >= SIMILAR_THRESHOLD.

Vector levels link each image to its nearest neighbours above the threshold (FAISS, exact inner
product) and take connected components (union-find). The thresholds are mini's, chosen from the
precision/recall table of `python scripts/eval_duplicates.py` (docs/duplicates.md); other models
need their own (`--threshold`)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

NEAR_THRESHOLD = 0.94
SIMILAR_THRESHOLD = 0.78
LEVELS = ("exact", "near", "similar")
LIKENESS = {"near-duplicate": NEAR_THRESHOLD, "same scene": SIMILAR_THRESHOLD}  # highest first
NEIGHBOURS = 16  # links looked at per image: groups larger than this still join through chains


def default_threshold(level: str) -> float | None:
    return {"exact": None, "near": NEAR_THRESHOLD, "similar": SIMILAR_THRESHOLD}[level]


def likeness(score: float) -> str | None:
    """What an image->image hit at cosine `score` is to the query image, by the same thresholds:
    "near-duplicate" (the same picture), "same scene" (another shot of it), or None (merely
    similar). On real photos these measured precision 1.000 at recall 0.954 and 0.908."""
    return next((name for name, t in LIKENESS.items() if score >= t), None)


def linked_groups(ids: np.ndarray, vectors: np.ndarray, threshold: float) -> list[tuple[list[int], float]]:
    """Connected components of "cosine >= threshold" among unit `vectors` (ids in order):
    (member ids, the weakest link used to join them), largest groups first."""
    import faiss

    n = len(ids)
    if n < 2:
        return []
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    scores, nbrs = index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(NEIGHBOURS + 1, n))
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    weakest: dict[int, float] = {}
    edges = sorted(
        (
            (float(s), i, int(j))
            for i in range(n)
            for s, j in zip(scores[i], nbrs[i])
            if j > i and s >= threshold
        ),
        reverse=True,
    )
    for s, i, j in edges:  # strongest first: each union's link is the weakest in its group so far
        a, b = root(i), root(j)
        if a != b:
            parent[b] = a
            weakest[a] = min(s, weakest.get(a, 1.0), weakest.pop(b, 1.0))
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(int(ids[i]))
    groups = [(m, weakest[r]) for r, m in members.items() if len(m) > 1]
    return sorted(groups, key=lambda g: (-len(g[0]), -g[1]))


def exact_groups(rows: Iterable[tuple[int, str]]) -> list[list[int]]:
    """(id, content hash) rows -> ids sharing a hash, largest groups first."""
    by_hash: dict[str, list[int]] = {}
    for image_id, digest in rows:
        by_hash.setdefault(digest, []).append(int(image_id))
    return sorted((g for g in by_hash.values() if len(g) > 1), key=len, reverse=True)
