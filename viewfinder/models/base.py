"""The encoder interface every image-text model is wrapped in, whatever runs it (torch or ONNX
Runtime).

An encoder loads lazily on first use, keeps its preprocessing beside the weights, and returns
L2-normalised float32 numpy arrays, so the store and the query code never see the runtime."""

from __future__ import annotations

import importlib.util
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import ViewfinderError


class Encoder(ABC):
    """Wraps one image-text model. Subclasses implement `_pick_device`, `_load`,
    `image_transform`, `encode_image_tensors`, `_encode_text_batch`, `fingerprint` and `save`;
    this class adds lazy thread-safe loading, batching and the shared defaults."""

    runtime = "torch"  # what runs the model: "torch" or "onnx"

    def __init__(self, spec: str, device: str = "auto") -> None:
        self.spec = spec
        self._device_preference = device
        self._device: str | None = None
        self._loaded = False
        self._lock = threading.Lock()
        self._dim: int | None = None

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def _pick_device(self, preference: str) -> str:
        """The device `preference` ("auto", "cpu", "cuda", ...) means on this machine."""

    @abstractmethod
    def _load(self, device: str) -> None:
        """Build or read what every call needs (towers may load later, on first use)."""

    @abstractmethod
    def image_transform(self):
        """The picklable callable that turns one RGB PIL image into the model's input array;
        built with the model so the two can never disagree. Decode workers run it."""

    @abstractmethod
    def encode_image_tensors(self, pixels, mean=None, std=None) -> np.ndarray:
        """Embed a preprocessed batch (N, C, H, W); the fast path the indexing pipeline uses.
        A uint8 batch (from `worker_transform`) is scaled and normalised with mean/std."""

    @abstractmethod
    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        """L2-normalised embeddings of one batch of texts."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A short hash that changes whenever the embeddings would, so an index is never
        searched with other weights."""

    @abstractmethod
    def save(self, out) -> str:
        """Write the weights under folder `out`; return the model spec that loads them back."""

    # -- shared behaviour ---------------------------------------------------------------------
    def worker_transform(self) -> tuple:
        """(transform, mean, std) for decode workers: where the transform can stop at uint8
        pixels, workers ship a quarter of the bytes and the model normalises with mean/std;
        else (the whole transform, None, None)."""
        return self.image_transform(), None, None

    def preprocess(self, image: Image.Image):
        return self.image_transform()(image)

    def frozen_image_tower(self):
        """Split for training and cached evaluation: (frozen part, trainable part) of the image
        side, or (None, None) where the model cannot be split (or not in this runtime)."""
        return None, None

    def frozen_text_tower(self):
        return None, None

    def patch_relevance(self, image: Image.Image, query: np.ndarray) -> np.ndarray | None:
        """How much each patch of `image` (squeezed to the model's square input, so that nothing
        is cut off) adds to its match with the unit vector `query`, as a (rows, cols) grid; None
        where the model cannot say (query/regions.py then uses occlusion)."""
        return None

    def compile_image_tower(self) -> None:
        raise ViewfinderError(f"{self.spec}: compiling the image tower needs the torch runtime")

    def calibration_path(self) -> Path | None:
        """The file of this model's fitted confidence (query/confidence.py), if it has one."""
        return None

    def adopts_fingerprint(self, stored: str) -> bool:
        """Whether `stored`, a fingerprint an earlier viewfinder wrote, is of these same weights
        (the catalogue is then rebound to `fingerprint()`, and the index keeps working)."""
        return False

    @property
    def device(self) -> str:
        self.ensure_loaded()
        assert self._device is not None
        return self._device

    def ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                device = self._pick_device(self._device_preference)
                self._load(device)
                self._device = device
                self._loaded = True

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode_texts(["a"]).shape[1])
        return self._dim

    def _stack(self, items: list):
        return np.stack(items)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        self.ensure_loaded()
        out = [
            self.encode_image_tensors(
                self._stack([self.preprocess(im.convert("RGB")) for im in images[i : i + batch_size]])
            )
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        self.ensure_loaded()
        out = [
            self._encode_text_batch(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)
        ]
        if not out:
            raise ValueError("encode_texts needs at least one text")
        return np.concatenate(out)


def torch_installed() -> bool:
    """Found, not imported: importing torch takes 1.5 s on a small CPU."""
    return importlib.util.find_spec("torch") is not None


def normalise(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)
