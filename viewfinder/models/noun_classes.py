"""What mini knows about English nouns: the ImageNet classes a noun names, contains or belongs to,
from WordNet (scripts/build_noun_classes.py writes the table beside the heads).

mini's image vectors carry their ImageNet classes (the class path); a query that is such a noun
adds the vector of its classes, built the same way, which pulls "alpaca" towards the photo the
classifier calls a llama and "gosling" towards the one it calls a goose (docs/mini.md). Only
whole queries that are one noun (with an article or "a photo of" around it) are looked up: in a
longer sentence the text tower already weighs the words."""

from __future__ import annotations

import functools
import gzip
import json
import re
from importlib import resources
from typing import Sequence

import numpy as np

from .classifier import NUM_CLASSES

# the share of the classes' vector in a noun query's, chosen on the val splits (docs/mini.md)
NOUN_SHARE = 0.25

_FRAME = re.compile(
    r"^(?:(?:a|an|the)\s+)?(?:(?:photo|picture|image|drawing)\s+of\s+)?(?:(?:a|an|the)\s+)?(.+?)[\s.!?]*$"
)
# WordNet's regular noun endings (its "morphy" rules), tried in order
_ENDINGS = (
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
    ("s", ""),
)


@functools.lru_cache(maxsize=1)
def _table() -> tuple[list[np.ndarray], dict[str, int], dict[str, str]]:
    path = resources.files("viewfinder.models").joinpath("weights/noun_classes.json.gz")
    data = json.loads(gzip.decompress(path.read_bytes()))
    return [np.asarray(c, dtype=np.int64) for c in data["classes"]], data["nouns"], data["irregular"]


def noun_key(text: str) -> str:
    """A noun as the table keys it: lower case, words joined by single spaces (WordNet writes
    "t-shirt" and "ice_cream"; people type "T-shirt", "t shirt", "ice cream")."""
    return re.sub(r"[\s_-]+", " ", text.strip().lower())


def lemma_candidates(noun: str) -> list[str]:
    """The noun itself, then the lemmas its plural ending could come from."""
    out = [noun]
    irregular = _table()[2].get(noun)
    if irregular:
        out.append(irregular)
    out += [noun[: -len(end)] + base for end, base in _ENDINGS if noun.endswith(end) and len(noun) > len(end)]
    return out


def classes_of(text: str) -> np.ndarray | None:
    """The ImageNet class indices the query names, or None when it is not one known noun."""
    match = _FRAME.match(text.strip().lower())
    if not match:
        return None
    lists, nouns, _ = _table()
    noun = noun_key(match.group(1))
    for lemma in lemma_candidates(noun):
        if lemma in nouns:
            return lists[nouns[lemma]]
    return None


def class_weights(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1000) weights, even over each query's classes, and whether the query has any."""
    weights = np.zeros((len(texts), NUM_CLASSES), dtype=np.float32)
    found = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        classes = classes_of(text)
        if classes is not None:
            weights[i, classes] = 1.0 / len(classes)
            found[i] = True
    return weights, found
