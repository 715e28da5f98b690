"""viewfinder: self-hosted multimodal semantic search for image collections.

`from viewfinder import Engine` is cheap: torch, FAISS and the model load on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["Engine", "Config", "load_config"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .config import Config, load_config
    from .engine import Engine


def __getattr__(name: str):
    if name == "Engine":
        from .engine import Engine

        return Engine
    if name in ("Config", "load_config"):
        from . import config

        return getattr(config, name)
    raise AttributeError(name)
