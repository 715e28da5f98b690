"""Storage: the SQLite catalogue (source of truth) and the FAISS vector indexes derived from it."""

from .catalog import Collection, ImageCatalog, ImageRecord, NewImage, TextRecord
from .store import Store
from .vectors import VectorIndex, choose_kind

__all__ = [
    "Collection",
    "ImageCatalog",
    "ImageRecord",
    "NewImage",
    "Store",
    "TextRecord",
    "VectorIndex",
    "choose_kind",
]
