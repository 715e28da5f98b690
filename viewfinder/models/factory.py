"""One factory: a model spec (grammar in spec.py) -> a lazy Encoder; no weights load here.

`mini` runs on ONNX Runtime on a CPU (no torch needed, and faster there) and on torch on a GPU
or where `runtime` says so; open_clip and transformers models always need torch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import ModelSpecError
from .base import Encoder, torch_installed
from .spec import parse_spec

RUNTIMES = ("auto", "onnx", "torch")


def _accelerator_likely() -> bool:
    """Whether torch would find a GPU, judged without importing torch (1.5 s on a small CPU)."""
    return os.path.exists("/dev/nvidiactl") or sys.platform == "darwin"


def mini_runtime(device: str = "auto", runtime: str = "auto") -> str:
    """Which runtime runs `mini` for these settings."""
    if runtime not in RUNTIMES:
        raise ModelSpecError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if runtime != "auto":
        return runtime
    if not torch_installed() or device == "cpu" or (device == "auto" and not _accelerator_likely()):
        return "onnx"
    return "torch"


def _need_torch(spec: str) -> None:
    if not torch_installed():
        raise ModelSpecError(
            f"model {spec!r} needs torch, which this install does not have: pip install 'viewfinder[torch]' "
            "(mini runs without it)"
        )


def load_encoder(
    spec: str, device: str = "auto", cache_dir: Path | None = None, runtime: str = "auto"
) -> Encoder:
    """Build the encoder for `spec` without loading any weights yet."""
    parsed = parse_spec(spec)
    if parsed.family == "mini":
        from .mini import shipped_heads_path, v1_heads_path

        if parsed.weights == "random":  # random heads are drawn by torch
            _need_torch(spec)
            from .mini import MiniEncoder

            return MiniEncoder(parsed.text, random_heads=True, device=device, cache_dir=cache_dir)
        heads = v1_heads_path() if parsed.weights == "v1" else Path(parsed.weights or shipped_heads_path())
        if mini_runtime(device, runtime) == "onnx":
            from .mini_onnx import MiniOnnxEncoder

            return MiniOnnxEncoder(parsed.text, heads_path=heads, device=device, cache_dir=cache_dir)
        _need_torch(spec)
        from .mini import MiniEncoder

        return MiniEncoder(parsed.text, heads_path=heads, device=device, cache_dir=cache_dir)
    _need_torch(spec)
    if parsed.family == "open_clip":
        from .openclip import OpenClipEncoder

        return OpenClipEncoder(parsed.text, parsed.name, parsed.weights, device=device)
    from .hf import HFClipEncoder

    return HFClipEncoder(parsed.text, parsed.name, device=device)
