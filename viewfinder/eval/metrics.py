"""Retrieval metrics as pure functions over rankings and relevance sets (no model inside).

`rankings[q]` is the ranked list of item ids returned for query q; `relevant[q]` the set of ids
that are correct for q. Binary relevance throughout; each function averages over queries."""

from __future__ import annotations

import math
from statistics import mean, median
from typing import Hashable, Mapping, Sequence

Rankings = Mapping[Hashable, Sequence[Hashable]]
Relevance = Mapping[Hashable, set]


def _queries(rankings: Rankings, relevant: Relevance) -> list:
    qs = [q for q in rankings if relevant.get(q)]
    if not qs:
        raise ValueError("no query has a relevant item")
    return qs


def recall_at_k(rankings: Rankings, relevant: Relevance, k: int) -> float:
    """Share of each query's relevant items found in its top k."""
    return mean(
        len(set(rankings[q][:k]) & relevant[q]) / len(relevant[q]) for q in _queries(rankings, relevant)
    )


def precision_at_k(rankings: Rankings, relevant: Relevance, k: int) -> float:
    return mean(len(set(rankings[q][:k]) & relevant[q]) / k for q in _queries(rankings, relevant))


def first_relevant_rank(ranking: Sequence[Hashable], relevant: set) -> int | None:
    """1-based rank of the first relevant item, None when none is ranked."""
    return next((i for i, item in enumerate(ranking, start=1) if item in relevant), None)


def mrr(rankings: Rankings, relevant: Relevance, k: int | None = None) -> float:
    out = []
    for q in _queries(rankings, relevant):
        r = first_relevant_rank(rankings[q][:k] if k else rankings[q], relevant[q])
        out.append(1.0 / r if r else 0.0)
    return mean(out)


def ndcg_at_k(rankings: Rankings, relevant: Relevance, k: int) -> float:
    out = []
    for q in _queries(rankings, relevant):
        dcg = sum(
            1.0 / math.log2(i + 1) for i, item in enumerate(rankings[q][:k], start=1) if item in relevant[q]
        )
        ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, len(relevant[q])) + 1))
        out.append(dcg / ideal)
    return mean(out)


def rank_stats(rankings: Rankings, relevant: Relevance) -> tuple[float, float]:
    """(mean, median) rank of the first relevant item; unranked counts as len(ranking) + 1."""
    ranks = [
        first_relevant_rank(rankings[q], relevant[q]) or len(rankings[q]) + 1
        for q in _queries(rankings, relevant)
    ]
    return float(mean(ranks)), float(median(ranks))


def accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    if len(predicted) != len(truth) or not truth:
        raise ValueError("accuracy needs equally long, non-empty predictions and labels")
    return sum(p == t for p, t in zip(predicted, truth)) / len(truth)


def retrieval_report(
    rankings: Rankings, relevant: Relevance, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    mean_rank, median_rank = rank_stats(rankings, relevant)
    out = {f"R@{k}": recall_at_k(rankings, relevant, k) for k in ks}
    out.update({f"P@{k}": precision_at_k(rankings, relevant, k) for k in ks if k > 1})
    out.update(
        {
            "MRR": mrr(rankings, relevant),
            "nDCG@10": ndcg_at_k(rankings, relevant, 10),
            "mean_rank": mean_rank,
            "median_rank": median_rank,
            "queries": float(len(_queries(rankings, relevant))),
        }
    )
    return out
