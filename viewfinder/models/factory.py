"""One factory: a model spec string -> a lazy Encoder.

Specs:
  mini                                  the project's offline model (shipped heads)
  mini@/path/heads.safetensors          mini with fine-tuned heads
  mini:random                           mini's towers with random heads (the baseline)
  open_clip:ViT-B-32/laion2b_s34b_b79k  architecture + pretrained tag (open_clip downloads it)
  open_clip:ViT-B-32@/path/ckpt.pt      architecture + local checkpoint
  open_clip:/path/to/dir                open_clip hub layout on disk (open_clip_config.json + weights)
  hf:openai/clip-vit-base-patch32       transformers CLIPModel / SiglipModel by hub id
  hf:/path/to/dir                       the same from a local directory
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelSpecError
from .base import Encoder

SPEC_HELP = "use 'mini', 'mini@HEADS.safetensors', 'open_clip:ARCH/TAG', 'open_clip:ARCH@CKPT', 'open_clip:DIR', 'hf:ID' or 'hf:DIR'"


def load_encoder(spec: str, device: str = "auto", cache_dir: Path | None = None) -> Encoder:
    """Build the encoder for `spec` without loading any weights yet."""
    spec = spec.strip()
    if spec == "mini:random":  # the untrained baseline: same towers, randomly initialised heads
        from .mini import MiniEncoder

        return MiniEncoder(spec, random_heads=True, device=device, cache_dir=cache_dir)
    if spec == "mini" or spec.startswith("mini@"):
        from .mini import MiniEncoder

        heads = Path(spec.split("@", 1)[1]).expanduser() if "@" in spec else None
        if heads is not None and not heads.exists():
            raise ModelSpecError(f"model spec {spec!r}: heads file {heads} does not exist")
        return MiniEncoder(spec, heads_path=heads, device=device, cache_dir=cache_dir)
    if spec.startswith("open_clip:"):
        from .openclip import OpenClipEncoder, parse_open_clip

        name, pretrained = parse_open_clip(spec[len("open_clip:"):])
        if pretrained and pretrained.startswith(("/", ".", "~")) and not Path(pretrained).expanduser().exists():
            raise ModelSpecError(f"model spec {spec!r}: checkpoint {pretrained} does not exist")
        return OpenClipEncoder(spec, name, pretrained, device=device)
    if spec.startswith("hf:"):
        from .hf import HFClipEncoder

        name = spec[len("hf:"):]
        if name.startswith(("/", ".", "~")) and not Path(name).expanduser().is_dir():
            raise ModelSpecError(f"model spec {spec!r}: directory {name} does not exist")
        return HFClipEncoder(spec, name, device=device)
    raise ModelSpecError(f"unknown model spec {spec!r}: {SPEC_HELP}")
