"""Shared fixtures: real sample photos from installed packages and tiny randomly initialised
models saved to disk in the layouts users have (open_clip hub folder, transformers folder)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from PIL import Image


def ctrl_c_works() -> None:
    """Popen preexec_fn: SIGINT back to its default in the child, so that Python turns Ctrl-C
    into KeyboardInterrupt there even when the test run was started as a background job (which
    ignores SIGINT, and children inherit that: the Ctrl-C tests then saw no interrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """The demo sample: real photos from scikit-image, opencv-doc and mate-backgrounds."""
    from viewfinder.data.samples import make_sample

    out = tmp_path_factory.mktemp("photos")
    assert make_sample(out) >= 12
    return out


def with_exif(src, dst, make, model, taken, offset=None, gps=None):
    """`src` saved as a JPEG at `dst` with an EXIF header: camera, date taken (EXIF text), its
    UTC offset ("+02:00"), GPS as (lat ref, (d, m, s), lon ref, (d, m, s))."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = taken
    if offset:
        sub[0x9011] = offset
    if gps:
        g = exif.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = gps
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.open(src).convert("RGB").save(dst, "JPEG", exif=exif, quality=92)
    return dst


def copy_photos(src: Path, dst: Path, names: list[str] | None = None) -> Path:
    """Copy the sample photos (those named, else all) into dst; a test whose photos are not
    installed here (the GPU machine has no opencv-doc) is skipped, not failed."""
    dst.mkdir(parents=True, exist_ok=True)
    found = [f for f in sorted(src.rglob("*")) if f.is_file() and (names is None or f.name in names)]
    missing = set(names or ()) - {f.name for f in found}
    if missing:
        pytest.skip(
            f"sample photos not installed here: {', '.join(sorted(missing))} (scripts/setup.sh installs them)"
        )
    for f in found:
        shutil.copy2(f, dst / f.name)
    return dst


@pytest.fixture(scope="session")
def tiny_open_clip_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny open_clip model in open_clip's hub layout."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("tiny_open_clip")
    (folder / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": TINY_OPEN_CLIP,
                "preprocess_cfg": {
                    "mean": [0.48145466, 0.4578275, 0.40821073],
                    "std": [0.26862954, 0.26130258, 0.27577711],
                },
            }
        )
    )
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_OPEN_CLIP)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


@pytest.fixture(scope="session")
def tiny_spec(tiny_open_clip_dir) -> str:
    return f"open_clip:{tiny_open_clip_dir}"


@pytest.fixture()
def env_cache(tmp_path_factory, monkeypatch):
    """Keep the converted mini backbone in one cache for the whole run."""
    cache = os.environ.get("VIEWFINDER_CACHE") or str(tmp_path_factory.getbasetemp() / "vf-cache")
    monkeypatch.setenv("VIEWFINDER_CACHE", cache)
    return Path(cache)


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny transformers CLIPModel with its processor, saved to a folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_hf")
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(
            hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2, vocab_size=1000
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=2,
            num_hidden_layers=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    vocab = {
        t: i
        for i, t in enumerate(
            ["<|startoftext|>", "<|endoftext|>", "a</w>", "dog</w>", "red</w>", "car</w>", "!", "a", "d"]
        )
    }
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizerFast(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
    proc = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok,
    )
    out = folder / "tiny-clip"
    CLIPModel(cfg).save_pretrained(out)
    proc.save_pretrained(out)
    return out
