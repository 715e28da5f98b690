"""Would a larger EfficientNet-Lite help mini on real photos, and what would it cost?

mini's class path turns the classifier's posterior into a text-space vector (the average of the
English tower's "a photo of a {class}" embeddings over its top classes). This measures that path
alone, with no trained head, for Lite0 (shipped), Lite1 and Lite2: text->image MRR / R@5 on the
real-photo sets (gcompris test split, tuxpaint-data photos, our photo queries), at mini's 224 px
crop and at each model's own crop size, and CPU milliseconds per image (torch, batch 16).

    python benchmarks/bench_classifiers.py              # about 5 min on 2 cores
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from viewfinder.data.datasets import caption_groups, load_dataset, load_image
from viewfinder.eval.metrics import mrr, recall_at_k
from viewfinder.models import load_encoder
from viewfinder.models.classifier import (
    CLASSIFIER_MEAN,
    CLASSIFIER_STD,
    VARIANTS,
    class_names,
    load_classifier,
)

SETS = (("gcompris", "test"), ("templates", None), ("photos", None))
TEMPERATURE, TOP_K = 2.0, 5  # mini's class path settings


def pixels(images: list[Image.Image], size: int) -> torch.Tensor:
    """Bicubic resize of the short side to size / 0.875, centre crop, scaled as the wheels expect."""
    from torchvision import transforms as T

    tf = T.Compose(
        [
            T.Resize(round(size / 0.875), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(CLASSIFIER_MEAN, CLASSIFIER_STD),
        ]
    )
    return torch.stack([tf(im) for im in images])


def class_path(logits: torch.Tensor, prompts: torch.Tensor) -> np.ndarray:
    prob = torch.softmax(logits / TEMPERATURE, dim=-1)
    top = torch.topk(prob, TOP_K, dim=-1)
    kept = torch.zeros_like(prob).scatter_(1, top.indices, top.values)
    vec = kept @ prompts
    return torch.nn.functional.normalize(vec, dim=-1).numpy()


def scores(image_vecs: np.ndarray, captions: list[str], text: torch.Tensor) -> tuple[float, float]:
    unique, _, groups = caption_groups(captions)
    sims = text.numpy() @ image_vecs.T
    rankings = {q: list(np.argsort(-sims[i])) for i, q in enumerate(unique)}
    return mrr(rankings, groups), recall_at_k(rankings, groups, 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    encoder = load_encoder("mini", device="cpu", runtime="torch")
    encoder.ensure_loaded()
    prompts = encoder.text_tower_features([f"a photo of a {n}" for n in class_names()])
    data = {}
    for name, split in SETS:
        pairs = load_dataset(name, split)
        captions = [p.caption for p in pairs]
        data[name] = (
            [load_image(p, size=512) for p in pairs],
            captions,
            encoder.text_tower_features(caption_groups(captions)[0]),
        )

    header = ["classifier", "crop", "CPU ms/image"] + [f"{n} MRR / R@5" for n, _ in SETS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for variant in args.variants:
        model = load_classifier(variant)
        for size in sorted({224, VARIANTS[variant].native_size}):
            cells, elapsed, count = [], 0.0, 0
            for name, _ in SETS:
                images, captions, text = data[name]
                logits = []
                for i in range(0, len(images), 16):
                    batch = pixels(images[i : i + 16], size)
                    start = time.perf_counter()
                    logits.append(model(batch))
                    elapsed += time.perf_counter() - start
                    count += len(batch)
                m, r = scores(class_path(torch.cat(logits), prompts), captions, text)
                cells.append(f"{m:.3f} / {r:.3f}")
            print(
                f"| {variant} | {size} | {1000 * elapsed / count:.1f} | " + " | ".join(cells) + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
