"""Run an evaluation and write its report folder: metrics.json, plots and a contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..data.datasets import load_dataset, load_image
from ..query.confidence import load_confidence
from .harness import (
    EvalResult,
    PairEmbeddings,
    cross_modal_consistency,
    embed_pairs,
    reliability,
    retrieval,
    score_distributions,
    worst_queries,
    zero_shot_accuracy,
)

REPORT_FILES = (
    "metrics.json",
    "recall_at_k.png",
    "score_histogram.png",
    "reliability.png",
    "worst_queries.png",
)


def evaluate(
    dataset: str,
    encoder,
    split: str = "test",
    report_dir: Path | None = None,
    feature_cache: Path | None = None,
    progress: bool = False,
) -> EvalResult:
    pairs = load_dataset(dataset, split)
    if len(pairs) < 2:
        raise ValueError(f"dataset {dataset!r} split {split!r} has {len(pairs)} pairs; nothing to evaluate")
    emb = embed_pairs(encoder, pairs, feature_cache, progress=progress)
    result = EvalResult(dataset, encoder.spec, split)
    result.metrics = retrieval(emb)
    result.metrics["pairs"] = len(pairs)
    result.metrics["cross_modal_consistency@10"] = cross_modal_consistency(emb)
    if dataset == "fashion-mnist":
        result.metrics["zero_shot_accuracy"] = zero_shot_accuracy(encoder, emb)
    result.reliability, result.metrics["top1_confidence_ECE"] = reliability(
        emb, load_confidence(encoder.calibration_path())
    )
    result.worst = worst_queries(emb)
    if report_dir is not None:
        write_report(result, emb, Path(report_dir))
    return result


def write_report(result: EvalResult, emb: PairEmbeddings, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(
        json.dumps(
            {
                "dataset": result.dataset,
                "model": result.model,
                "split": result.split,
                "metrics": result.metrics,
                "reliability": result.reliability,
                "worst_queries": result.worst,
            },
            indent=2,
        )
    )

    from .harness import rankings
    from .metrics import recall_at_k

    ks = [k for k in (1, 2, 5, 10, 20, 50, 100) if k <= len(emb.pairs)]
    t2i, groups, i2t, i2t_rel = rankings(emb)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ks, [recall_at_k(t2i, groups, k) for k in ks], marker="o", label="text -> image")
    ax.plot(ks, [recall_at_k(i2t, i2t_rel, k) for k in ks], marker="s", label="image -> text")
    ax.set(
        xscale="log",
        xlabel="K",
        ylabel="Recall@K",
        ylim=(0, 1),
        title=f"{result.dataset} ({result.split}): {result.model}",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "recall_at_k.png", dpi=110)
    plt.close(fig)

    match, other = score_distributions(emb)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(other, bins=60, density=True, alpha=0.6, label=f"non-matching ({len(other)})")
    ax.hist(match, bins=30, density=True, alpha=0.6, label=f"matching ({len(match)})")
    ax.set(xlabel="cosine score", ylabel="density", title="image-text scores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "score_histogram.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    if result.reliability:
        ax.plot(
            [b["mean_confidence"] for b in result.reliability],
            [b["accuracy"] for b in result.reliability],
            "o-",
            label="top-1 hits",
        )
    ax.set(
        xlabel="confidence",
        ylabel="share correct",
        xlim=(0, 1),
        ylim=(0, 1),
        title="reliability (text -> image top-1)",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)

    contact_sheet(result.worst, emb).save(out / "worst_queries.png")


def contact_sheet(worst: list[dict], emb: PairEmbeddings, thumb: int = 96) -> Image.Image:
    """One row a query: the correct image (green frame) then the top hits."""
    by_id = {p.id: p for p in emb.pairs}
    cols = 1 + max((len(w["top"]) for w in worst), default=0)
    label_w = 260
    sheet = Image.new("RGB", (label_w + cols * (thumb + 6), max(1, len(worst)) * (thumb + 8)), "white")
    draw = ImageDraw.Draw(sheet)
    try:  # a face with accents ("Chichén Itzá"): Pillow's built-in one has ASCII only
        font = ImageFont.truetype("DejaVuSans.ttf", 13)
    except OSError:
        font = ImageFont.load_default(size=13)
    for r, w in enumerate(worst):
        y = r * (thumb + 8) + 4
        draw.text((4, y + 4), f"{w['query'][:40]}", fill="black", font=font)
        draw.text((4, y + 22), f"match at rank {w['rank_of_match']}", fill="gray", font=font)
        for c, pid in enumerate([w["match"]] + w["top"]):
            im = load_image(by_id[pid], size=thumb)
            im.thumbnail((thumb, thumb))
            x = label_w + c * (thumb + 6)
            sheet.paste(im, (x, y))
            if c == 0:
                draw.rectangle([x - 2, y - 2, x + thumb + 1, y + thumb + 1], outline="green", width=2)
    return sheet
