"""Model wrappers: every image-text model behind one `Encoder` interface, built by `load_encoder`
from a spec string (grammar in spec.py)."""

from .base import Encoder
from .factory import load_encoder
from .spec import SPEC_HELP, ModelSpec, parse_spec

__all__ = ["SPEC_HELP", "Encoder", "ModelSpec", "load_encoder", "parse_spec"]
