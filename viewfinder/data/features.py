"""Cache the outputs of an encoder's frozen towers for a list of pairs, so that training the
trainable part costs seconds instead of a backbone pass per step. Caches are keyed by the
encoder fingerprint of the frozen parts and the pair ids, and written atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from ..images import load_codecs
from .datasets import ImageTextPair, load_image


@dataclass
class PairFeatures:
    ids: list[str]
    image: np.ndarray  # (n, d_img) frozen image-tower output
    text: np.ndarray  # (n, d_txt) frozen text-tower output
    captions: list[str]


class PairImages:
    """A torch-style dataset: pair -> preprocessed tensor (and its index, for the trainer's
    shuffled batches); runs in decode workers."""

    def __init__(self, pairs: Sequence[ImageTextPair], transform: Callable, with_index: bool = False) -> None:
        self.pairs, self.transform, self.with_index = pairs, transform, with_index

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        pixels = self.transform(load_image(self.pairs[i], size=256))
        return (pixels, i) if self.with_index else pixels


def frozen_features(
    encoder,
    pairs: Sequence[ImageTextPair],
    cache: Path | None = None,
    batch_size: int = 64,
    workers: int = 1,
    progress: bool = True,
) -> PairFeatures:
    """Frozen-tower features of every pair, read from `cache` when it already holds them all."""
    import torch

    ids = [p.id for p in pairs]
    if cache is not None and cache.exists():
        data = np.load(cache, allow_pickle=False)
        have = {k: i for i, k in enumerate(data["ids"].tolist())}
        if all(k in have for k in ids):
            rows = np.array([have[k] for k in ids], dtype=np.int64)
            return PairFeatures(
                ids,
                data["image"][rows].astype(np.float32),
                data["text"][rows].astype(np.float32),
                [p.caption for p in pairs],
            )
    encoder.ensure_loaded()
    image_frozen, _ = encoder.frozen_image_tower()
    text_frozen, _ = encoder.frozen_text_tower()
    if image_frozen is None or text_frozen is None:
        raise ValueError(f"{encoder.spec} has no frozen tower to cache; train it end to end instead")
    load_codecs()  # before the workers are forked
    loader = torch.utils.data.DataLoader(
        PairImages(pairs, encoder.image_transform()),
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=False,
    )
    image_parts = []
    with torch.inference_mode():
        for batch in tqdm(loader, desc="image features", unit="batch", disable=not progress):
            image_parts.append(image_frozen(batch.to(encoder.device)).float().cpu().numpy())
        captions = [p.caption for p in pairs]
        text_parts = [
            text_frozen(captions[i : i + 256]).float().cpu().numpy() for i in range(0, len(captions), 256)
        ]
    feats = PairFeatures(ids, np.concatenate(image_parts), np.concatenate(text_parts), captions)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(
            tmp, ids=np.array(ids), image=feats.image.astype(np.float16), text=feats.text.astype(np.float16)
        )
        tmp.replace(cache)
    return feats
