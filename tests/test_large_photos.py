"""Phone-size photos: the fast paths (JPEG draft decoding on the CPU; on the GPU path, the box
reduction before the antialiased resize, and the share of large JPEGs the readers decode) give
the reference path's embeddings, and the batching keeps every worker busy and every record in
order."""

import os

import numpy as np
import pytest
from PIL import Image

from viewfinder.images import DRAFT_SIZE
from viewfinder.ingest.gpu_decode import (
    LARGE_JPEG_BYTES,
    auto_cpu_share,
    byte_bounded,
    for_pillow,
    gpu_decoders_for,
    gpu_readers,
    mostly_large,
    resize_crop,
)
from viewfinder.ingest.pipeline import cpu_batches
from viewfinder.ingest.prepare import decode_for_model
from viewfinder.ingest.walk import FileStat, scan
from viewfinder.models import load_encoder

from conftest import copy_photos

PHOTOS = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "horse.png", "orange.jpg"]


@pytest.fixture(scope="module")
def twelve_megapixel(photos, tmp_path_factory):
    """Real photos enlarged to 4032 x 3024 (a phone camera's size) and saved as JPEG quality 90."""
    src = copy_photos(photos, tmp_path_factory.mktemp("src"), PHOTOS)
    out = tmp_path_factory.mktemp("12mp")
    for name in PHOTOS:
        im = Image.open(src / name).convert("RGB")
        size = (4032, 3024) if im.width >= im.height else (3024, 4032)
        im.resize(size, Image.Resampling.BICUBIC).save(out / f"{name}.jpg", quality=90)
    return sorted(out.iterdir())


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1)  # both L2-normalised


def test_fast_paths_embed_12_megapixel_photos_like_the_reference(twelve_megapixel, env_cache):
    """Reference: full-size decode, the model's own resize. Draft decode and the GPU path's
    resize (run here on the CPU, on torchvision's decode of the same file) must stay within
    cosine 0.99 of it."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    mini = load_encoder("mini", device="cpu", cache_dir=env_cache)
    transform = mini.image_transform()
    stats = [FileStat(str(p), p.stat().st_size, p.stat().st_mtime) for p in twelve_megapixel]
    reference = mini.encode_image_tensors(
        np.stack([transform(Image.open(p).convert("RGB")) for p in twelve_megapixel])
    )
    draft = mini.encode_image_tensors(
        np.stack([decode_for_model(f, transform, 10**9, DRAFT_SIZE)[1] for f in stats])
    )
    decoded = [
        decode_jpeg(torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8), mode=ImageReadMode.RGB)
        for p in twelve_megapixel
    ]
    pooled = resize_crop(decoded, 224).round().to(torch.uint8).numpy()
    gpu_like = mini.encode_image_tensors(pooled)
    assert _cosines(reference, draft).min() >= 0.99, _cosines(reference, draft)
    assert _cosines(reference, gpu_like).min() >= 0.99, _cosines(reference, gpu_like)


def test_the_box_reduction_changes_a_resize_by_little():
    """On a smooth 12 MP image, box-reduce then resize vs the antialiased resize alone."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    small = torch.randint(0, 256, (1, 3, 48, 64), generator=g).float()
    big = (
        F.interpolate(small, size=(3024, 4032), mode="bilinear", align_corners=False).round().to(torch.uint8)
    )
    fast = resize_crop([big[0]], 224)
    direct = F.interpolate(big.float(), size=(224, 298), mode="bicubic", antialias=True, align_corners=False)
    direct = direct[..., :, 37:261].clamp(0, 255)
    assert (fast - direct).abs().mean() < 1.0  # of 0..255


def test_cpu_batches_are_exact_ordered_and_spread_over_workers(tmp_path, photos, tiny_spec):
    folder = copy_photos(photos, tmp_path / "pics")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    files = scan(folder)
    transform, _, _ = load_encoder(tiny_spec, device="cpu").uint8_transform()
    out = list(cpu_batches(files, transform, batch_size=10, workers=2, max_pixels=10**9))
    assert [len(r) for _, r in out[:-1]] == [10] * (len(out) - 1)
    records = [r for _, recs in out for r in recs]
    assert [r.path for r in records] == [f.path for f in files]
    for pixels, recs in out:
        assert len(pixels) == sum(r.error is None for r in recs)
    assert any(r.error and "broken.jpg" in r.error for r in records)


def _stat(name: str, size: int) -> FileStat:
    return FileStat(f"/photos/{name}", size, 0.0)


def test_reader_batches_are_bounded_by_bytes():
    files = [_stat(f"{i}.jpg", 4_000_000) for i in range(100)] + [
        _stat(f"s{i}.jpg", 50_000) for i in range(300)
    ]
    batches = byte_bounded(files, 256, max_bytes=128 << 20)
    assert [f for b in batches for f in b] == files
    assert all(len(b) <= 256 and (len(b) == 1 or sum(f.size for f in b) <= 128 << 20) for b in batches)
    assert len(batches[0]) == 33 and len(batches[-1]) < 256


def test_a_share_of_large_jpegs_goes_to_pillow():
    files = [_stat(f"{i}.jpg", LARGE_JPEG_BYTES + i) for i in range(40)] + [
        _stat("small.jpg", 1000),
        _stat("big.png", 10**8),
    ]
    picked = for_pillow(files, 0.25)
    assert len(picked) == 10 and "/photos/small.jpg" not in picked and "/photos/big.png" not in picked
    assert for_pillow(files, 0.0) == set()
    assert 0.0 <= auto_cpu_share(4) < auto_cpu_share(14) < 0.5 and auto_cpu_share(2) == 0.0
    # an unknown decoder counts as torchvision; beside nvImageCodec the readers draft nothing
    assert auto_cpu_share(14, ["torchcodec"]) == auto_cpu_share(14)
    assert auto_cpu_share(14, ["nvimgcodec-hw:4"]) == 0.0 == auto_cpu_share(14, ["torchvision", "nvimgcodec"])


def test_large_photos_get_more_readers(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    large = [_stat(f"{i}.jpg", 4_000_000) for i in range(10)]
    small = [_stat(f"{i}.jpg", 200_000) for i in range(10)]
    assert gpu_readers(mostly_large(small), 4) == 4
    # drafting readers: every core but two
    assert gpu_readers(mostly_large(large), 4) == 14 == gpu_readers(True, 4, ["nvimgcodec-hw"], 0.2)
    # readers that only read: twice what reading at the decoder's rate takes (800 / 230 a core)
    assert gpu_readers(True, 4, ["nvimgcodec-hw"]) == 7 == gpu_readers(True, 2, ["nvimgcodec-hw"], 0.0)
    assert gpu_readers(True, 10, ["nvimgcodec-hw"]) == 10  # never fewer than configured
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert gpu_readers(True, 1, ["nvimgcodec-hw"]) == 2  # never more than the cores but two


def test_large_photos_go_to_nvimagecodec_where_it_is_installed(monkeypatch):
    from viewfinder.ingest import gpu_decode

    large = [_stat(f"{i}.jpg", 4_000_000) for i in range(10)]
    small = [_stat(f"{i}.jpg", 200_000) for i in range(10)]
    for present in (True, False):
        monkeypatch.setattr(gpu_decode, "installed", lambda spec, present=present: present)
        assert gpu_decoders_for(mostly_large(large)) == (("nvimgcodec-hw",) if present else ("torchvision",))
        assert gpu_decoders_for(mostly_large(small)) == ("torchvision",)
        assert gpu_decoders_for(mostly_large(large), ["torchcodec"]) == ("torchcodec",)  # the setting wins
