"""Model wrappers: every image-text model behind one `Encoder` interface, built by `load_encoder`."""

from .base import Encoder
from .factory import load_encoder

__all__ = ["Encoder", "load_encoder"]
