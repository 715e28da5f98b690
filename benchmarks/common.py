"""Shared pieces of the benchmarks: randomly initialised models of the real architectures (speed
does not depend on weight values, and real weights cannot travel to the GPU machine), synthetic
JPEG collections, GPU utilisation sampling, and table printing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def earlier_gpu_batches(module: str):
    """gpu_batches of viewfinder/ingest/MODULE.py, an earlier commit's gpu_decode.py put beside
    this tree's (`git show COMMIT:viewfinder/ingest/gpu_decode.py > ...`), taking what
    ingest.pipeline now passes: one from before the draft processes is called without `drafters`."""
    import importlib
    import inspect

    fn = importlib.import_module(f"viewfinder.ingest.{module}").gpu_batches
    if "drafters" in inspect.signature(fn).parameters:
        return fn
    return lambda *args, drafters=None, **kw: fn(*args, **kw)


def random_vit_b_32(device: str = "auto"):
    """open_clip ViT-B-32, randomly initialised (no pretrained tag)."""
    from viewfinder.models.openclip import OpenClipEncoder

    return OpenClipEncoder("open_clip:ViT-B-32 (random init)", "ViT-B-32", None, device=device)


def random_mini(device: str = "auto", vocab: Path | None = None, version: str = "v2"):
    """mini's architecture (Dinov2 ViT-S/14 + MiniLM-L6 + heads, and for v2 EfficientNet-Lite0 and
    the v2 heads) with random weights. The MiniLM tokenizer vocabulary is read from the installed
    package, or from `vocab` where it is carried."""
    from viewfinder.models.mini import HeadsConfig, MiniEncoder, build_heads, dinov2_config

    class RandomMini(MiniEncoder):
        def _load(self, device: str) -> None:
            from transformers import BertConfig, BertModel, BertTokenizerFast, Dinov2Model

            self.backbone = Dinov2Model(dinov2_config()).to(device)
            self.text_model = BertModel(
                BertConfig(
                    hidden_size=384,
                    num_hidden_layers=6,
                    num_attention_heads=12,
                    intermediate_size=1536,
                    vocab_size=30522,
                )
            ).to(device)
            if vocab is None:
                from viewfinder.models.mini import text_model_path

                vocab_file = text_model_path() / "vocab.txt"
            else:
                vocab_file = vocab
            self.tokenizer = BertTokenizerFast(vocab_file=str(vocab_file))
            self.trained = False
            self.classifier = None
            if version == "v1":
                self.use_heads(build_heads(), device)
                return
            import timm

            self.classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval().to(device)
            self.use_heads(
                build_heads(HeadsConfig(image_features="dino+classifier", class_path=True)), device
            )

    return RandomMini(f"mini {version} (random init)", random_heads=True, device=device)


def _one_photo(args: tuple) -> Path:
    from PIL import Image, ImageDraw, ImageFilter

    path, (w, h), seed = args
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    im = Image.fromarray(base).resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        draw.ellipse(
            [x0, y0, x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))],
            fill=tuple(int(c) for c in rng.integers(0, 255, 3)),
        )
    im = im.filter(ImageFilter.GaussianBlur(1))
    noisy = np.clip(np.asarray(im, np.int16) + rng.integers(-12, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    if path.suffix == ".heic":
        import pillow_heif

        pillow_heif.register_heif_opener()
    Image.fromarray(noisy).save(path, quality=90)  # PNG ignores quality
    return path


def make_jpegs(
    folder: Path, n: int, sizes=((500, 375), (1024, 768)), seed: int = 0, ext: str = "jpg"
) -> list[Path]:
    """Photo-like images (smooth colour fields, shapes, noise), JPEG or HEIC at quality 90 or PNG
    (ext "jpg", "heic", "png"), half of each size."""
    from multiprocessing import Pool

    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"img_{i:05d}.{ext}", sizes[i % len(sizes)], seed + i) for i in range(n)]
    # small chunks for a few slow files (a 12 MP HEIC takes most of a minute to encode)
    chunk = max(1, min(16, n // (4 * (os.cpu_count() or 1))))
    with Pool() as pool:
        return pool.map(_one_photo, jobs, chunksize=chunk)


def file_tensor(path: Path):
    """A file's bytes as a uint8 CPU tensor in ordinary memory, as the GPU JPEG decoders take them."""
    import torch

    return torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)


def file_stats(files: list[Path]) -> list:
    """The ingest pipeline's FileStat records of `files`, in their order."""
    from viewfinder.ingest.walk import FileStat

    return [FileStat(str(f), f.stat().st_size, f.stat().st_mtime) for f in files]


def hard_linked(folder: Path, copies: int) -> Path:
    """A new folder with `copies` hard links of each file in `folder`: more files to index from
    the same bytes (and page cache) than the machine has time to generate."""
    linked = Path(tempfile.mkdtemp(prefix="vf-links-"))
    for f in sorted(folder.iterdir()):
        for c in range(copies):
            os.link(f, linked / f"{c}_{f.name}")
    return linked


class GpuUtilisation:
    """Samples nvidia-smi's utilisation.gpu every 200 ms while in the `with` block."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()

    def __enter__(self) -> "GpuUtilisation":
        try:  # NVML in this process: starting nvidia-smi every 200 ms would itself take most of a core
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._read = lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:  # noqa: BLE001  (no NVML: fall back to the command line tool, or to nothing)
            if not shutil.which("nvidia-smi"):
                return self
            self._read = _nvidia_smi_utilisation
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._read())
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    @property
    def mean(self) -> str:
        return f"{np.mean(self.samples):.0f}%" if self.samples else "n/a"


def _nvidia_smi_utilisation() -> float:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return float(out.splitlines()[0])


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def print_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print(" | ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))
