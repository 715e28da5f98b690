"""The encoder interface every image-text model is wrapped in.

An encoder loads lazily on first use, keeps its preprocessing beside the weights, and returns
L2-normalised float32 numpy arrays, so the store and the query code never see torch."""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
from PIL import Image


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference != "auto":
        return preference
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class Encoder(ABC):
    """Wraps one image-text model. Subclasses implement `_load`, `_image_features`,
    `_text_features`, `preprocess` and `modules`; this class adds batching, normalisation,
    device placement and the weights fingerprint."""

    def __init__(self, spec: str, device: str = "auto") -> None:
        self.spec = spec
        self._device_preference = device
        self._device: str | None = None
        self._loaded = False
        self._lock = threading.Lock()
        self._fingerprint: str | None = None
        self._dim: int | None = None

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def _load(self, device: str) -> None:
        """Build or read the weights and move them to `device`."""

    @abstractmethod
    def image_transform(self):
        """The picklable callable that turns one RGB PIL image into the model's input tensor;
        built with the model so the two can never disagree. Decode workers run it."""

    @abstractmethod
    def _image_features(self, pixels):  # torch.Tensor (N, C, H, W) -> (N, D)
        ...

    @abstractmethod
    def _text_features(self, texts: list[str]):  # -> torch.Tensor (N, D)
        ...

    @abstractmethod
    def modules(self) -> list:
        """The torch modules whose weights define the embeddings (for fingerprint and training)."""

    def uint8_transform(self):
        """The decode-worker half of `image_transform` when it ends in ToTensor + Normalize:
        (PIL -> uint8 CHW tensor callable, mean, std). Workers then ship a quarter of the bytes
        and the device does the float conversion and normalisation. None when it cannot split."""
        from torchvision import transforms as T

        full = self.image_transform()
        steps = list(getattr(full, "transforms", []))
        if len(steps) < 2 or not isinstance(steps[-1], T.Normalize) or not isinstance(steps[-2], T.ToTensor):
            return None
        return T.Compose(steps[:-2] + [T.PILToTensor()]), tuple(steps[-1].mean), tuple(steps[-1].std)

    def worker_transform(self) -> tuple:
        """(transform, mean, std) for decode workers: `uint8_transform` where the model's transform
        splits, else (the whole transform, None, None)."""
        split = self.uint8_transform()
        return split if split is not None else (self.image_transform(), None, None)

    def frozen_image_tower(self):
        """Split for training: (frozen part, trainable part) of the image side. The trainer caches
        the frozen part's outputs once; by default nothing is frozen."""
        return None, self._image_features

    def frozen_text_tower(self):
        return None, self._text_features

    def trainable_modules(self) -> list:
        return self.modules()

    @abstractmethod
    def save(self, out) -> str:
        """Write the weights under folder `out`; return the model spec that loads them back."""

    def logit_scale(self):
        """The learnable temperature (log scale) the model was trained with, if it has one."""
        for module in self.trainable_modules():
            if hasattr(module, "logit_scale"):
                return module.logit_scale
        return None

    # -- shared behaviour ---------------------------------------------------------------------
    def preprocess(self, image: Image.Image):
        return self.image_transform()(image)

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
                device = pick_device(self._device_preference)
                self._load(device)
                for module in self.modules():
                    module.eval()
                self._device = device
                self._loaded = True

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode_texts(["a"]).shape[1])
        return self._dim

    def encode_image_tensors(self, pixels, mean=None, std=None) -> np.ndarray:
        """Embed a preprocessed batch (N, C, H, W); the fast path the indexing pipeline uses.
        A uint8 batch (from `uint8_transform`) is scaled and normalised with mean/std on the device."""
        import torch

        self.ensure_loaded()
        with torch.inference_mode(), self._autocast():
            pixels = pixels.to(self.device, non_blocking=True)
            if pixels.dtype == torch.uint8:
                m = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
                s = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
                pixels = (pixels.float() / 255.0 - m) / s
            feats = self._image_features(pixels)
        return _normalise(feats)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        import torch

        self.ensure_loaded()
        out = [
            self.encode_image_tensors(
                torch.stack([self.preprocess(im.convert("RGB")) for im in images[i : i + batch_size]])
            )
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        import torch

        self.ensure_loaded()
        out = []
        for i in range(0, len(texts), batch_size):
            with torch.inference_mode(), self._autocast():
                out.append(_normalise(self._text_features(list(texts[i : i + batch_size]))))
        if not out:
            raise ValueError("encode_texts needs at least one text")
        return np.concatenate(out)

    def fingerprint(self) -> str:
        """A short hash of every weight, so an index is never searched with other weights."""
        if self._fingerprint is None:
            self.ensure_loaded()
            h = hashlib.blake2b(digest_size=12)
            for module in self.modules():
                for name, tensor in sorted(module.state_dict().items()):
                    h.update(name.encode())
                    h.update(str(tuple(tensor.shape)).encode())
                    h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def compile_image_tower(self) -> None:
        """torch.compile the image tower for the batches that follow; each new batch shape pays
        a compilation first. On an H100 it took ViT-B/32 from 20,154 to 26,889 images/s on
        tensors (docs/benchmarks.md); indexing from JPEGs is bound by decoding, so it pays only
        where the model is the bound (larger models, or images already decoded)."""
        import torch

        self.ensure_loaded()
        self._image_features = torch.compile(self._image_features)

    def _autocast(self):
        import contextlib

        import torch

        if self._device == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _normalise(feats) -> np.ndarray:
    arr = feats.float().cpu().numpy().astype(np.float32, copy=False)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)
