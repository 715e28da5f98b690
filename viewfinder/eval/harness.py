"""Evaluate an encoder on image-text pairs: retrieval both ways, zero-shot classification,
confidence reliability, cross-modal consistency, and the worst queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.datasets import FASHION_CLASSES, ImageTextPair, caption_groups, load_image
from ..query.confidence import ConfidenceModel
from .metrics import accuracy, first_relevant_rank, retrieval_report


@dataclass
class PairEmbeddings:
    pairs: list[ImageTextPair]
    images: np.ndarray  # (n, d) unit vectors
    texts: np.ndarray  # (n, d) unit vectors of each pair's caption


@dataclass
class EvalResult:
    dataset: str
    model: str
    split: str
    metrics: dict = field(default_factory=dict)
    worst: list[dict] = field(default_factory=list)
    reliability: list[dict] = field(default_factory=list)


def embed_pairs(
    encoder,
    pairs: Sequence[ImageTextPair],
    feature_cache: Path | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> PairEmbeddings:
    """Final embeddings; encoders with frozen towers reuse cached tower outputs when given."""
    from tqdm import tqdm

    pairs = list(pairs)
    encoder.ensure_loaded()
    if encoder.frozen_image_tower()[0] is not None:
        import torch

        from ..data.features import frozen_features

        feats = frozen_features(encoder, pairs, cache=feature_cache, progress=progress)
        _, image_head = encoder.frozen_image_tower()
        _, text_head = encoder.frozen_text_tower()
        with torch.inference_mode():
            img = image_head(torch.from_numpy(feats.image).to(encoder.device)).float().cpu().numpy()
            txt = text_head(torch.from_numpy(feats.text).to(encoder.device)).float().cpu().numpy()
        return PairEmbeddings(pairs, _unit(img), _unit(txt))
    bar = tqdm(total=len(pairs), unit="img", desc="embedding", disable=not progress)
    parts = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        parts.append(encoder.encode_images([load_image(p, size=256) for p in chunk]))
        bar.update(len(chunk))
    bar.close()
    images = np.concatenate(parts)
    return PairEmbeddings(pairs, images, encoder.encode_texts([p.caption for p in pairs]))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def text_image_scores(emb: PairEmbeddings) -> tuple[list[str], dict[str, set[int]], np.ndarray]:
    """Unique captions, their relevant image rows, and the (captions, images) cosine matrix."""
    unique, rows, groups = caption_groups([p.caption for p in emb.pairs])
    return unique, groups, emb.texts[rows] @ emb.images.T


def rankings(emb: PairEmbeddings) -> tuple[dict, dict, dict, dict]:
    """(text->image rankings, their relevant sets, image->text rankings, their relevant sets)."""
    unique, groups, sims = text_image_scores(emb)
    t2i = {c: np.argsort(-sims[j]).tolist() for j, c in enumerate(unique)}
    i2t_order = np.argsort(-sims.T, axis=1)
    i2t = {i: [unique[j] for j in i2t_order[i]] for i in range(len(emb.pairs))}
    i2t_rel = {i: {p.caption} for i, p in enumerate(emb.pairs)}
    return t2i, groups, i2t, i2t_rel


def retrieval(emb: PairEmbeddings, ks: Sequence[int] = (1, 5, 10)) -> dict[str, dict[str, float]]:
    t2i, groups, i2t, i2t_rel = rankings(emb)
    return {
        "text_to_image": retrieval_report(t2i, groups, ks),
        "image_to_text": retrieval_report(i2t, i2t_rel, ks),
    }


def zero_shot_accuracy(
    encoder, emb: PairEmbeddings, classes: Sequence[str] = FASHION_CLASSES, template: str = "a photo of a {}"
) -> float:
    prompts = encoder.encode_texts([template.format(c) for c in classes])
    predicted = [classes[j] for j in np.argmax(emb.images @ prompts.T, axis=1)]
    return accuracy(predicted, [p.group for p in emb.pairs])


def reliability(emb: PairEmbeddings, model: ConfidenceModel, bins: int = 10) -> tuple[list[dict], float]:
    """Top-1 text->image hits binned by the model's confidence (how often each bin is right),
    and their expected calibration error."""
    from .calibration import confidences, expected_calibration_error, labelled_hits, reliability_bins, select

    unique, rows, groups = caption_groups([p.caption for p in emb.pairs])
    hits = labelled_hits(
        emb.texts[rows], emb.images, [groups[c] for c in unique], "text->image", k=1, with_absent=False
    )
    top = select(hits, hits.top)
    conf = confidences(model, top)
    return reliability_bins(conf, top.relevant, bins), expected_calibration_error(conf, top.relevant, bins)


def cross_modal_consistency(emb: PairEmbeddings, k: int = 10) -> float:
    """Mean overlap (|A & B| / k) between an image's k nearest images and the k nearest captions
    of its caption (both over the same pairs): do the two towers agree on what is similar?"""
    n = len(emb.pairs)
    k = min(k, n - 1)
    img_nn = np.argsort(-(emb.images @ emb.images.T), axis=1)[:, 1 : k + 1]
    txt_nn = np.argsort(-(emb.texts @ emb.texts.T), axis=1)[:, 1 : k + 1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(img_nn, txt_nn)]))


def worst_queries(emb: PairEmbeddings, n: int = 8, hits: int = 5) -> list[dict]:
    unique, groups, sims = text_image_scores(emb)
    scored = []
    for j, c in enumerate(unique):
        order = np.argsort(-sims[j])
        rank = first_relevant_rank(order.tolist(), groups[c]) or len(order) + 1
        scored.append((rank, c, order[:hits].tolist(), sorted(groups[c])[0]))
    scored.sort(key=lambda x: -x[0])
    return [
        {"query": c, "rank_of_match": r, "match": emb.pairs[m].id, "top": [emb.pairs[i].id for i in top]}
        for r, c, top, m in scored[:n]
    ]


def score_distributions(emb: PairEmbeddings) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of matching (same caption) and non-matching image-text pairs."""
    sims = emb.texts @ emb.images.T
    captions = np.array([p.caption for p in emb.pairs])
    match = captions[:, None] == captions[None, :]
    return sims[match], sims[~match]
