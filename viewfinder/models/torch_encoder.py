"""The torch half of the encoder interface: models run by torch (open_clip, transformers, and
`mini` on a GPU or for training). Subclasses implement `_load`, `_image_features`,
`_text_features`, `image_transform`, `modules` and `save`; this class adds device placement,
autocast, the split into uint8 worker output and device-side normalisation, and the weights
fingerprint."""

from __future__ import annotations

import hashlib
from abc import abstractmethod

import numpy as np

from .base import Encoder, normalise


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference != "auto":
        return preference
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class TorchEncoder(Encoder):
    runtime = "torch"

    def __init__(self, spec: str, device: str = "auto") -> None:
        super().__init__(spec, device)
        self._fingerprint: str | None = None

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def _image_features(self, pixels):  # torch.Tensor (N, C, H, W) -> (N, D)
        ...

    @abstractmethod
    def _text_features(self, texts: list[str]):  # -> torch.Tensor (N, D)
        ...

    @abstractmethod
    def modules(self) -> list:
        """The torch modules whose weights define the embeddings (for fingerprint and training)."""

    # -- torch behaviour ----------------------------------------------------------------------
    def _pick_device(self, preference: str) -> str:
        return pick_device(preference)

    def ensure_loaded(self) -> None:
        if not self._loaded:
            super().ensure_loaded()
            for module in self.modules():
                module.eval()

    def uint8_transform(self):
        """The decode-worker half of `image_transform` when it ends in ToTensor + Normalize:
        (PIL -> uint8 CHW tensor callable, mean, std). None when it cannot split."""
        from torchvision import transforms as T

        full = self.image_transform()
        steps = list(getattr(full, "transforms", []))
        if len(steps) < 2 or not isinstance(steps[-1], T.Normalize) or not isinstance(steps[-2], T.ToTensor):
            return None
        return T.Compose(steps[:-2] + [T.PILToTensor()]), tuple(steps[-1].mean), tuple(steps[-1].std)

    def worker_transform(self) -> tuple:
        split = self.uint8_transform()
        return split if split is not None else (self.image_transform(), None, None)

    def frozen_image_tower(self):
        return None, self._image_features

    def frozen_text_tower(self):
        return None, self._text_features

    def trainable_modules(self) -> list:
        return self.modules()

    def logit_scale(self):
        """The learnable temperature (log scale) the model was trained with, if it has one."""
        for module in self.trainable_modules():
            if hasattr(module, "logit_scale"):
                return module.logit_scale
        return None

    def _stack(self, items: list):
        import torch

        return torch.stack(items)

    def encode_image_tensors(self, pixels, mean=None, std=None) -> np.ndarray:
        import torch

        self.ensure_loaded()
        if isinstance(pixels, np.ndarray):  # from the decode workers
            pixels = torch.from_numpy(pixels)
            if self.device == "cuda":
                pixels = pixels.pin_memory()  # lets the copy below run asynchronously
        with torch.inference_mode(), self._autocast():
            pixels = pixels.to(self.device, non_blocking=True)
            if pixels.dtype == torch.uint8:
                m = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
                s = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
                pixels = (pixels.float() / 255.0 - m) / s
            feats = self._image_features(pixels)
        return normalise(feats.float().cpu().numpy())

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode(), self._autocast():
            return normalise(self._text_features(texts).float().cpu().numpy())

    def weights_fingerprint(self) -> str:
        """A short hash of every weight of `modules()`."""
        self.ensure_loaded()
        h = hashlib.blake2b(digest_size=12)
        for module in self.modules():
            for name, tensor in sorted(module.state_dict().items()):
                h.update(name.encode())
                h.update(str(tuple(tensor.shape)).encode())
                h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = self.weights_fingerprint()
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
