"""Confidence that a hit is a real match, and when to abstain.

Two models behind one interface:

- `CalibratedConfidence` (used wherever the model ships a calibration file, as `mini` does): a
  logistic regression of degree 2 (the features and their pairwise products, so that what a
  score means can depend on the collection's spread) per query direction (text->image,
  image->text, image->image), fitted on held-out labelled collections, some of which lack the
  query's subject altogether (`scripts/fit_confidence.py`, `viewfinder/eval/calibration.py`).
  Its output is the probability that the hit is relevant; its ECE per test split is in
  docs/confidence.md. It reads only what a search knows (`hit_features`): the cosine, its
  z-score against a fixed sample of the collection, the gaps to the top hit and to the next one,
  the rank, the collection's size, how many items of that size would reach the score by chance,
  and the mean and spread of the query's scores over the sample (a collection where everything
  looks alike, such as ten kinds of clothes, gives high scores to hits and misses alike). A
  second logistic model (degree 1) reads the rank-1 hit's features and gives the probability
  that the collection holds the query's subject at all; the search abstains when it is under the
  direction's threshold, chosen on held-out data so that the queries it answers have their
  subject present at a stated rate.
- `ScoreTailConfidence`, the fallback for models with no calibration file: the probability that
  none of the N stored items would reach the score by chance under a normal model of this
  query's scores, Phi(z) ** N. Uncalibrated: it overestimates on heavy tails and underestimates
  where most items match."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

MIN_STD = 0.01  # cosine scores of a tiny or uniform collection: keep z finite
SELF_SCORE = 0.999  # an image query's cosine with its own stored picture (or a byte-identical copy)
DIRECTIONS = ("text->image", "image->text", "image->image")
FEATURES = (
    "score",
    "z",
    "z_below_top",
    "z_above_next",
    "log_rank",
    "log_population",
    "log10_chance_hits",
    "sample_mean",
    "sample_std",
)


@dataclass(frozen=True)
class QueryStats:
    mean: float
    std: float
    population: int

    def z(self, score: float) -> float:
        return (score - self.mean) / self.std


def query_stats(sample_scores: np.ndarray, population: int) -> QueryStats:
    """The query's score distribution over a sample of the collection."""
    if len(sample_scores) == 0:
        return QueryStats(0.0, 1.0, max(population, 1))
    return QueryStats(
        float(sample_scores.mean()), max(float(sample_scores.std()), MIN_STD), max(population, 1)
    )


@dataclass(frozen=True)
class HitContext:
    """What the search knows about one hit when it judges it."""

    score: float
    rank: int  # 1-based, in the whole ranking
    top_score: float  # the rank-1 hit's score
    next_score: float | None  # the following hit's score (None: the last one)
    direction: str  # "text->image", "image->text", "image->image" or "text->text"


def chance_tail(z: float) -> float:
    """P(a non-matching item scores above z), normal model."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def hit_features(hit: HitContext, stats: QueryStats) -> np.ndarray:
    """The calibrated model's inputs, in FEATURES order."""
    z = stats.z(hit.score)
    following = hit.next_score if hit.next_score is not None else hit.score
    chance = stats.population * chance_tail(z)
    return np.array(
        [
            hit.score,
            z,
            stats.z(hit.top_score) - z,
            (hit.score - following) / stats.std,
            math.log(hit.rank),
            math.log(stats.population),
            max(math.log10(chance) if chance > 0 else -12.0, -12.0),
            stats.mean,
            stats.std,
        ],
        np.float64,
    )


class ConfidenceModel(Protocol):
    """Turns a hit into a confidence in [0, 1], and judges from the rank-1 hit whether the
    collection holds anything that matches (else the search abstains)."""

    def confidence(self, hit: HitContext, stats: QueryStats) -> float: ...

    def abstains(self, top: HitContext, stats: QueryStats) -> bool: ...


@dataclass(frozen=True)
class ScoreTailConfidence:
    abstain_below: float = 0.5

    def confidence(self, hit: HitContext, stats: QueryStats) -> float:
        # log Phi(z) * N, in log space so that large N does not underflow early
        tail = chance_tail(stats.z(hit.score))
        log_cdf = math.log1p(-tail) if tail < 1.0 else -math.inf
        return float(math.exp(stats.population * log_cdf)) if log_cdf > -math.inf else 0.0

    def abstains(self, top: HitContext, stats: QueryStats) -> bool:
        return self.confidence(top, stats) < self.abstain_below


def quadratic_terms(z: np.ndarray) -> np.ndarray:
    """The features (last axis) and every product of two of them, squares included: the terms of
    a degree-2 logistic model, in scikit-learn's PolynomialFeatures order."""
    i, j = np.triu_indices(z.shape[-1])
    return np.concatenate([z, z[..., i] * z[..., j]], axis=-1)


@dataclass(frozen=True)
class Logistic:
    """P = sigmoid(coef . terms + intercept). The terms are the first `width` features,
    standardised by `center` and `scale`, and at degree 2 also their pairwise products
    (quadratic_terms). Calibration files from before degree 2 have no `center`: degree 1 on the
    raw features."""

    coef: tuple[float, ...]
    intercept: float
    center: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    degree: int = 1

    @property
    def width(self) -> int:
        """How many of FEATURES it reads (a fit from before later features were added reads only
        the ones it knew)."""
        return len(self.center) if self.center else len(self.coef)

    def __call__(self, features: np.ndarray) -> float:
        terms = features[: self.width]
        if self.center:
            terms = (terms - np.asarray(self.center)) / np.asarray(self.scale)
        if self.degree == 2:
            terms = quadratic_terms(terms)
        logit = float(np.dot(self.coef, terms)) + self.intercept
        return 1.0 / (1.0 + math.exp(-min(max(logit, -50.0), 50.0)))


@dataclass(frozen=True)
class DirectionFit:
    relevant: Logistic  # P(this hit is relevant)
    present: Logistic  # from the rank-1 hit: P(the collection holds the query's subject)
    abstain_below: float  # on `present`
    target_precision: float  # kept queries whose subject is present, on held-out data (eval/calibration.py)


@dataclass(frozen=True)
class CalibratedConfidence:
    fits: dict[str, DirectionFit]
    source: str = ""  # what it was fitted on
    fallback: ScoreTailConfidence = ScoreTailConfidence()

    def _fit(self, direction: str) -> DirectionFit | None:
        # a text query over stored texts is judged like one over images
        return self.fits.get(direction) or self.fits.get(direction.replace("->text", "->image"))

    def confidence(self, hit: HitContext, stats: QueryStats) -> float:
        if hit.direction == "image->image" and hit.score >= SELF_SCORE:
            return 1.0  # the query's own picture: a fact, and one the fitted data never shows
        fit = self._fit(hit.direction)
        return fit.relevant(hit_features(hit, stats)) if fit else self.fallback.confidence(hit, stats)

    def presence(self, top: HitContext, stats: QueryStats) -> float | None:
        fit = self._fit(top.direction)
        return fit.present(hit_features(top, stats)) if fit else None

    def abstains(self, top: HitContext, stats: QueryStats) -> bool:
        fit = self._fit(top.direction)
        if fit is None:
            return self.fallback.abstains(top, stats)
        return fit.present(hit_features(top, stats)) < fit.abstain_below

    def to_json(self) -> str:
        def logistic(m: Logistic) -> dict:
            body = {"coef": list(m.coef), "intercept": m.intercept}
            if m.center:
                body |= {"center": list(m.center), "scale": list(m.scale), "degree": m.degree}
            return body

        width = max((f.relevant.width for f in self.fits.values()), default=len(FEATURES))
        body = {
            "features": list(FEATURES[:width]),
            "source": self.source,
            "directions": {
                d: {
                    "relevant": logistic(f.relevant),
                    "present": logistic(f.present),
                    "abstain_below": f.abstain_below,
                    "target_precision": f.target_precision,
                }
                for d, f in self.fits.items()
            },
        }
        return json.dumps(body, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "CalibratedConfidence":
        body = json.loads(text)
        names = tuple(body.get("features", ()))
        if not names or names != FEATURES[: len(names)]:  # calibrations fitted before keep working
            raise ValueError(f"calibration features {list(names)} are not a start of {list(FEATURES)}")

        def logistic(m: dict) -> Logistic:
            return Logistic(
                tuple(m["coef"]),
                m["intercept"],
                tuple(m.get("center", ())),
                tuple(m.get("scale", ())),
                m.get("degree", 1),
            )

        fits = {
            d: DirectionFit(
                logistic(f["relevant"]), logistic(f["present"]), f["abstain_below"], f["target_precision"]
            )
            for d, f in body["directions"].items()
        }
        return cls(fits, body.get("source", ""))


def term_confidence(model: ConfidenceModel, scores: np.ndarray, chosen: int) -> float:
    """How sure a caption's main term is: the model's image->text confidence of term `chosen`
    among all the vocabulary's terms (`scores`: the image's cosine with each), as if the
    vocabulary were a collection of texts searched with the image."""
    order = np.argsort(-scores)
    rank = int(np.nonzero(order == chosen)[0][0]) + 1
    after = float(scores[order[rank]]) if rank < len(order) else None
    hit = HitContext(float(scores[chosen]), rank, float(scores[order[0]]), after, "image->text")
    return model.confidence(hit, query_stats(scores, len(scores)))


STRONG, POSSIBLE = 0.5, 0.2  # confidence bounds of the words people see


def verdict(confidence: float, abstained: bool) -> str:
    """A hit's confidence in words: "strong match", "possible match", "weak match", or "no good
    match" for every hit of a search that abstained."""
    if abstained:
        return "no good match"
    return (
        "strong match"
        if confidence >= STRONG
        else "possible match"
        if confidence >= POSSIBLE
        else "weak match"
    )


def load_confidence(path: Path | None) -> ConfidenceModel:
    """The calibrated model stored at `path`, else the score-tail fallback."""
    if path is None or not path.exists():
        return ScoreTailConfidence()
    return CalibratedConfidence.from_json(path.read_text(encoding="utf-8"))
