"""Confidence that a hit is a real match, and when to abstain.

The default, `ScoreTailConfidence`, asks one question of each score: how unlikely is it that an
image that does NOT match the query scores this high, given this collection? It draws the scores
of the query against a fixed random sample of the collection (most of which do not match any
given query), models them as normal (mean m, std s), and returns the probability that none of
the N stored items would reach the score by chance:

    confidence(score) = Phi((score - m) / s) ** N

A hit that stands far out of the bulk gets a confidence near 1; a best hit that is no better
than what N unrelated items reach by chance gets a low one, and the search abstains when even the
best hit is under `abstain_below`. Limits, stated plainly: the normal model underestimates heavy
tails (overconfident), and a collection where most items match the query (all cats, "cat") looks
like noise to it (underconfident). It is uncalibrated; a calibrated model (fitted on held-out
pairs) can replace it through the same two-method interface."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

MIN_STD = 0.01  # cosine scores of a tiny or uniform collection: keep z finite


class ConfidenceModel(Protocol):
    """Turns a hit's score into a confidence in [0, 1]; the search abstains when the best hit's
    confidence is under `abstain_below`."""

    abstain_below: float

    def fit_query(self, sample_scores: np.ndarray, population: int) -> "QueryStats": ...

    def confidence(self, score: float, stats: "QueryStats") -> float: ...


@dataclass(frozen=True)
class QueryStats:
    mean: float
    std: float
    population: int

    def z(self, score: float) -> float:
        return (score - self.mean) / self.std


@dataclass(frozen=True)
class ScoreTailConfidence:
    abstain_below: float = 0.5

    def fit_query(self, sample_scores: np.ndarray, population: int) -> QueryStats:
        if len(sample_scores) == 0:
            return QueryStats(0.0, 1.0, max(population, 1))
        return QueryStats(
            float(sample_scores.mean()), max(float(sample_scores.std()), MIN_STD), max(population, 1)
        )

    def confidence(self, score: float, stats: QueryStats) -> float:
        z = stats.z(score)
        # log Phi(z) * N, computed in log space so that large N does not underflow early
        tail = 0.5 * math.erfc(z / math.sqrt(2.0))
        log_cdf = math.log1p(-tail) if tail < 1.0 else -math.inf
        return float(math.exp(stats.population * log_cdf)) if log_cdf > -math.inf else 0.0
