"""Every model spec loads through the factory and gives the reference library's own embeddings."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from viewfinder.errors import ModelSpecError
from viewfinder.models import load_encoder

from conftest import TINY_OPEN_CLIP


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(3)]


def _unit(x):
    x = x.detach().float().numpy()
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_open_clip_local_dir_matches_open_clip(tiny_open_clip_dir):
    import open_clip

    enc = load_encoder(f"open_clip:{tiny_open_clip_dir}", device="cpu")
    ref, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_open_clip_dir}")
    tok = open_clip.get_tokenizer(f"local-dir:{tiny_open_clip_dir}")
    ref.eval()
    texts = ["a dog on a beach", "red car"]
    with torch.no_grad():
        want_img = _unit(ref.encode_image(torch.stack([preprocess(im) for im in _images()])))
        want_txt = _unit(ref.encode_text(tok(texts)))
    np.testing.assert_allclose(enc.encode_images(_images()), want_img, atol=1e-5)
    np.testing.assert_allclose(enc.encode_texts(texts), want_txt, atol=1e-5)
    assert enc.dim == TINY_OPEN_CLIP["embed_dim"]


def test_open_clip_arch_with_checkpoint_file(tmp_path, tiny_open_clip_dir):
    import open_clip

    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "TinyTestCLIP.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(cfg_dir)
    ckpt = tiny_open_clip_dir / "open_clip_pytorch_model.bin"
    enc = load_encoder(f"open_clip:TinyTestCLIP@{ckpt}", device="cpu")
    same = load_encoder(f"open_clip:{tiny_open_clip_dir}", device="cpu")
    np.testing.assert_allclose(enc.encode_texts(["x y"]), same.encode_texts(["x y"]), atol=1e-6)
    assert enc.fingerprint() == same.fingerprint()


def test_hf_clip_local_dir_matches_transformers(tiny_hf_dir):
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(tiny_hf_dir).eval()
    proc = CLIPProcessor.from_pretrained(tiny_hf_dir)
    enc = load_encoder(f"hf:{tiny_hf_dir}", device="cpu")
    with torch.no_grad():
        pix = proc(images=_images(), return_tensors="pt")["pixel_values"]
        ids = proc.tokenizer(["a dog", "red car"], padding=True, return_tensors="pt")
        img = model.get_image_features(pixel_values=pix)
        txt = model.get_text_features(**ids)
    img = img if hasattr(img, "shape") else img.pooler_output
    txt = txt if hasattr(txt, "shape") else txt.pooler_output
    np.testing.assert_allclose(enc.encode_images(_images()), _unit(img), atol=1e-5)
    np.testing.assert_allclose(enc.encode_texts(["a dog", "red car"]), _unit(txt), atol=1e-5)


def test_bad_specs_are_clear():
    with pytest.raises(ModelSpecError, match="unknown model spec"):
        load_encoder("clip-please")
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_encoder("open_clip:ViT-B-32@/nope/ckpt.pt")
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_encoder("hf:/nope/dir")


def test_construction_loads_nothing():
    enc = load_encoder("open_clip:ViT-B-32/laion2b_s34b_b79k")
    assert not enc._loaded  # no download, no weights, until the first encode


@pytest.mark.slow
def test_mini_backbone_equals_onnx_graph(env_cache):
    """The converted Dinov2Model gives the ONNX backbone's features (onnxruntime) to 1e-4."""
    import onnx
    import onnxruntime as ort

    from viewfinder.models.mini import BACKBONE_OUTPUT, onnx_model_path

    enc = load_encoder("mini", device="cpu", cache_dir=env_cache, runtime="torch")
    enc.ensure_loaded()
    x = torch.stack([enc.preprocess(im) for im in _images()[:2]])
    with torch.no_grad():
        ours = enc.backbone(pixel_values=x).last_hidden_state.numpy()
    graph = onnx.load(str(onnx_model_path()))
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info(BACKBONE_OUTPUT + "_output_0", onnx.TensorProto.FLOAT, None)
    )
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    theirs = sess.run([BACKBONE_OUTPUT + "_output_0"], {"input_image": x.numpy()})[0]
    assert ours.shape == (2, 257, 384)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_uint8_worker_path_gives_the_same_embeddings(tiny_open_clip_dir, photos):
    """Workers may ship uint8 pixels and let the device normalise: same vectors as the float path."""
    enc = load_encoder(f"open_clip:{tiny_open_clip_dir}", device="cpu")
    split = enc.uint8_transform()
    assert split is not None
    to_uint8, mean, std = split
    im = Image.open(next(photos.rglob("chelsea.png"))).convert("RGB")
    as_uint8 = to_uint8(im)
    assert as_uint8.dtype == torch.uint8
    np.testing.assert_allclose(
        enc.encode_image_tensors(as_uint8[None], mean, std),
        enc.encode_image_tensors(enc.preprocess(im)[None]),
        atol=1e-5,
    )
