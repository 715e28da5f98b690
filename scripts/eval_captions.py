"""Caption quality and the value of fusing lexical search over captions with vector search.

    python scripts/eval_captions.py [--captioner vocab] [--split test] [--dataset tuxpaint|gcompris]

Indexes the split's images (neutral file names, so paths give nothing away) with `mini`,
captions them, and reports BLEU-4 (sacrebleu) of the generated captions against the reference
captions, text->image recall with the reference captions as queries for vector-only,
lexical-only (generated captions alone) and fused search, and, for captioners that give one, how
often a caption names its image's subject (shares a content word with the reference) at each
caption confidence: the table that sets the alt-text threshold (query/results.py)."""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from viewfinder import Engine
from viewfinder.data.datasets import load_dataset, load_image
from viewfinder.eval.metrics import mrr, recall_at_k
from viewfinder.store.catalog import STOPWORDS

GENERIC = STOPWORDS | {"photo", "picture", "drawing", "painting", "image", "cartoon", "illustration", "icon"}


def content_words(text: str) -> set[str]:
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", text)} - GENERIC
    return {w[:-1] if w.endswith("s") and len(w) > 3 else w for w in words}  # plural -> singular


def names_subject(caption: str, reference: str) -> bool:
    """Does the caption share a content word with the reference?"""
    return bool(content_words(caption) & content_words(reference))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--captioner", default="vocab")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default="mini")
    ap.add_argument("--dataset", default="tuxpaint", choices=("tuxpaint", "gcompris"))
    args = ap.parse_args()
    import sacrebleu

    pairs = load_dataset(args.dataset, args.split)
    tmp = Path(tempfile.mkdtemp(prefix="vf-captions-"))
    folder = tmp / "images"
    folder.mkdir()
    names = {}
    for i, p in enumerate(pairs):
        path = folder / f"img_{i:04d}.png"
        load_image(p, size=448).save(path)
        names[str(path)] = p
    with Engine.open(tmp / "db", model=args.model, workers=1) as engine:
        engine.index(folder, progress=False)
        started = time.perf_counter()
        rep = engine.caption(args.captioner, progress=False)
        seconds = time.perf_counter() - started
        records = engine.store.catalog.images_under(str(folder))
        hyps, refs = [], []
        for path, rec in sorted(records.items()):
            hyps.append(rec.caption or "")
            refs.append(names[path].caption)
        bleu = sacrebleu.corpus_bleu(hyps, [refs])
        by_caption: dict[str, set[int]] = {}
        for path, rec in records.items():
            by_caption.setdefault(names[path].caption, set()).add(rec.id)
        rows = []
        for mode in ("vector", "lexical", "fused"):
            rankings = {c: [h.id for h in engine.search(c, k=10, mode=mode).hits] for c in by_caption}
            rows.append(
                (
                    mode,
                    recall_at_k(rankings, by_caption, 1),
                    recall_at_k(rankings, by_caption, 5),
                    mrr(rankings, by_caption),
                )
            )
        examples = sorted(records.items())[:: max(1, len(records) // 5)][:5]
        sure = [
            (rec.caption_confidence, names_subject(rec.caption or "", names[path].caption))
            for path, rec in records.items()
            if rec.caption_confidence is not None
        ]
    print(
        f"\n{args.dataset} {args.split} split: {len(pairs)} images, model {args.model}, captioner "
        f"{args.captioner}: "
        f"{rep.captioned} captions in {seconds:.1f} s"
    )
    print(f"BLEU-4 (sacrebleu, generated vs reference): {bleu.score:.2f}")
    print("\n| search mode | t->i R@1 | t->i R@5 | MRR@10 |\n|---|---|---|---|")
    for mode, r1, r5, m in rows:
        label = {
            "vector": "vector only",
            "lexical": "lexical only (generated captions)",
            "fused": "fused (RRF)",
        }[mode]
        print(f"| {label} | {r1:.3f} | {r5:.3f} | {m:.3f} |")
    if sure:
        conf = np.array([c for c, _ in sure])
        right = np.array([r for _, r in sure])
        print("\n| caption confidence at least | captions | share that name the subject |\n|---|---|---|")
        for t in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5):
            kept = conf >= t
            share = f"{right[kept].mean():.2f}" if kept.any() else "-"
            print(f"| {t:.2f} | {int(kept.sum())} ({kept.mean():.0%}) | {share} |")
    print("\nexamples (image -> generated caption | reference):")
    for path, rec in examples:
        print(f"  {names[path].id}: {rec.caption!r} | {names[path].caption!r}")


if __name__ == "__main__":
    main()
