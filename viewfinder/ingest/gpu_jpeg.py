"""JPEG decoders on a CUDA device, by name, for the GPU indexing path (gpu_decode.py) and the
decoder benchmarks.

- "torchvision": nvJPEG through torchvision.io.decode_jpeg, which batch-decodes baseline JPEGs on
  the hardware JPEG engines of A100/H100-class GPUs; one decode per process at a time.
- "torchcodec": nvJPEG through TorchCodec (`pip install viewfinder[gpu]`), the successor of
  torchvision's image decoders (deprecated in torchvision 0.29), which bundles its own nvJPEG.
- "nvimgcodec": NVIDIA nvImageCodec (`pip install viewfinder[gpu]`), each image on the backend it
  prefers.
- "nvimgcodec-hw": nvImageCodec held to the hardware JPEG engines, with CUDA decoding for what
  they do not take (e.g. progressive). On phone photos it keeps the engines busier than
  torchvision does (12 MP: 601 against 415 images/s in calls of 32 on an H200), so folders of
  large photos use it where it is installed (gpu_decode.gpu_decoders_for).
Every one of them slows the model and is slowed by it when both run on one GPU (on small JPEGs
on an H100, none of the mixes beat torchvision alone in the pipeline: docs/benchmarks.md).

Each decoder takes a batch of JPEG files as uint8 CPU tensors and returns them decoded, as uint8
(3,H,W) tensors on the device in the same order, queued on the caller's current CUDA stream, not
turned by their EXIF orientation (the caller does that for every decoder alike) unless the
decoder says it turns them itself (`JpegDecoder.upright`: TorchCodec always does), in two steps
that may run in two threads: `prepare` (host-side work) and `decode` (the call that decodes). It
raises RuntimeError when it cannot decode one of them. The caller reuses the input's memory (a
read slot) as soon as `decode` returns: torchvision's call returns when the GPU is done with the
bytes, and a copy from pageable (not page-locked) memory to the GPU, which any of them makes, has
read its source by the time the call that queues it returns."""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

DECODERS = ("torchvision", "torchcodec", "nvimgcodec", "nvimgcodec-hw")
_MODULES = {"torchvision": "torchvision", "torchcodec": "torchcodec"}  # else nvImageCodec's


def _as_given(jpegs: list) -> list:
    return jpegs


@dataclass(frozen=True)
class JpegDecoder:
    decode: Callable[[object], list]  # prepare's output -> (3,H,W) uint8 images on the device
    # JPEG files as uint8 CPU tensors -> what decode takes: the host-side work before a decode
    # (parsing headers, allocating outputs on the caller's current stream), which the pipeline
    # runs in a thread of its own ahead of the decode call so that the call follows the last
    # one without a gap
    prepare: Callable[[list], object] = _as_given
    upright: bool = False  # it applies the EXIF orientation itself
    # its first call costs far more than later ones (on one reader batch of 28 phone photos a new
    # nvImageCodec decoder took 0.4-0.8 s on H200 and H100 hosts, then 37-42 ms; torchvision 48 ms
    # from the first)
    slow_start: bool = False

    def __call__(self, jpegs: list) -> list:
        return self.decode(self.prepare(jpegs))


def jpeg_decoder(spec: str, device: str) -> JpegDecoder:
    """The decoder `spec` on `device`: a name from DECODERS, for nvImageCodec optionally followed
    by ":N", its own host threads (default 0: one per core). ImportError when TorchCodec or
    nvImageCodec is missing."""
    name, _, threads = spec.partition(":")
    if not (threads or "0").isdigit():
        raise ValueError(
            f"GPU JPEG decoder {spec!r} (setting gpu_decoders): the number after ':' is nvImageCodec's "
            "thread count"
        )
    if name == "torchvision":
        return _torchvision(device)
    if name == "torchcodec":
        return _torchcodec(device)
    if name not in DECODERS:
        raise ValueError(
            f"unknown GPU JPEG decoder {name!r} (setting gpu_decoders): use one of {', '.join(DECODERS)}"
        )
    return _nvimgcodec(name, device, int(threads or 0))


# Decoders made by earlier runs of this process and free now, by (spec, device): a new nvImageCodec
# decoder spent 0.4-0.8 s in its first call on 12 MP photos (37-42 ms after), every index run.
_idle: dict[tuple[str, str], list[JpegDecoder]] = {}
_idle_lock = threading.Lock()


@contextlib.contextmanager
def reused_decoder(
    spec: str, device: str, warm_with: Callable[[], list] | None = None
) -> Iterator[JpegDecoder]:
    """`jpeg_decoder(spec, device)` for one run, taken from those earlier runs of the process left
    free and given back after it; a run going on at the same time gets a decoder of its own. A new
    decoder with a slow start first decodes `warm_with()` (JPEGs like the run's first batch), on
    the caller's stream, so that its start is paid here, while the caller's readers read, and not
    in the run's first batch; a warm-up that fails is skipped (the run's own batch will tell)."""
    with _idle_lock:
        free = _idle.get((spec, device))
        decoder = free.pop() if free else None
    if decoder is None:
        decoder = jpeg_decoder(spec, device)
        if decoder.slow_start and warm_with is not None:
            with contextlib.suppress(OSError, RuntimeError):
                decoder(warm_with())
    try:
        yield decoder
    finally:
        with _idle_lock:
            _idle.setdefault((spec, device), []).append(decoder)


def installed(spec: str) -> bool:
    """Whether the library of decoder `spec` is installed (without importing it)."""
    module = _MODULES.get(spec.partition(":")[0], "nvidia.nvimgcodec")
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing too
        return False


def _torchvision(device: str) -> JpegDecoder:
    from torchvision.io import ImageReadMode, decode_jpeg

    def decode(jpegs: list) -> list:
        return decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=False)

    return JpegDecoder(decode)


def _torchcodec(device: str) -> JpegDecoder:
    try:
        from torchcodec.decoders import decode_jpeg
    except ImportError as exc:
        raise ImportError(
            "GPU JPEG decoder 'torchcodec' needs TorchCodec: pip install 'viewfinder[gpu]'"
        ) from exc

    def decode(jpegs: list) -> list:
        return decode_jpeg(list(jpegs), mode="RGB", device=device)

    return JpegDecoder(decode, upright=True)  # TorchCodec has no switch for the EXIF orientation


def _nvimgcodec(name: str, device: str, cpu_threads: int) -> JpegDecoder:
    import torch

    try:
        from nvidia import nvimgcodec
    except ImportError as exc:
        raise ImportError(
            f"GPU JPEG decoder {name!r} needs nvImageCodec: pip install 'viewfinder[gpu]'"
        ) from exc
    kinds = {
        "nvimgcodec": [],
        "nvimgcodec-hw": [nvimgcodec.BackendKind.HW_GPU_ONLY, nvimgcodec.BackendKind.GPU_ONLY],
    }[name]
    decoder = nvimgcodec.Decoder(
        device_id=torch.device(device).index or 0,
        max_num_cpu_threads=cpu_threads,
        backends=[nvimgcodec.Backend(k) for k in kinds] or None,
    )
    planar = nvimgcodec.SampleFormat.P_RGB  # (3,H,W), the layout the resize takes
    params = nvimgcodec.DecodeParams(
        apply_exif_orientation=False, color_spec=nvimgcodec.ColorSpec.SRGB, sample_format=planar
    )

    def prepare(jpegs: list) -> tuple:
        # (the CodeStreams read the JPEGs' memory, which the caller keeps until decode returns)
        stream = torch.cuda.current_stream(device).cuda_stream
        codes = [nvimgcodec.CodeStream(j.numpy()) for j in jpegs]
        # Decoded straight into tensors from torch's caching allocator, queued on the same stream:
        # no buffers of nvImageCodec's own to allocate and free each call, and no copy out of them
        out = [torch.empty((3, c.height, c.width), dtype=torch.uint8, device=device) for c in codes]
        return stream, codes, out, nvimgcodec.as_images(out, cuda_stream=stream, sample_format=planar)

    def decode(prepared: tuple) -> list:
        stream, codes, out, into = prepared
        images = decoder.decode(codes, params=params, cuda_stream=stream, images=into)
        if any(im is None for im in images):
            raise RuntimeError(f"nvImageCodec ({name}) could not decode a JPEG of this batch")
        return out

    return JpegDecoder(decode, prepare, slow_start=True)
