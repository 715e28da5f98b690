"""One factory: a model spec (grammar in spec.py) -> a lazy Encoder; no weights load here."""

from __future__ import annotations

from pathlib import Path

from .base import Encoder
from .spec import parse_spec


def load_encoder(spec: str, device: str = "auto", cache_dir: Path | None = None) -> Encoder:
    """Build the encoder for `spec` without loading any weights yet."""
    parsed = parse_spec(spec)
    if parsed.family == "mini":
        from .mini import MiniEncoder

        if parsed.weights == "random":
            return MiniEncoder(parsed.text, random_heads=True, device=device, cache_dir=cache_dir)
        if parsed.weights == "v1":
            from .mini import v1_heads_path

            return MiniEncoder(parsed.text, heads_path=v1_heads_path(), device=device, cache_dir=cache_dir)
        heads = Path(parsed.weights) if parsed.weights else None
        return MiniEncoder(parsed.text, heads_path=heads, device=device, cache_dir=cache_dir)
    if parsed.family == "open_clip":
        from .openclip import OpenClipEncoder

        return OpenClipEncoder(parsed.text, parsed.name, parsed.weights, device=device)
    from .hf import HFClipEncoder

    return HFClipEncoder(parsed.text, parsed.name, device=device)
