"""Caption quality and the value of fusing lexical search over captions with vector search.

    python scripts/eval_captions.py [--captioner vocab] [--split test]

Indexes the tuxpaint split's images (neutral file names, so paths give nothing away) with `mini`,
captions them, and reports BLEU-4 (sacrebleu) of the generated captions against the reference
captions, and text->image recall with the reference captions as queries for vector-only,
lexical-only (generated captions alone) and fused search."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from viewfinder import Engine
from viewfinder.data.datasets import load_dataset, load_image
from viewfinder.eval.metrics import mrr, recall_at_k


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--captioner", default="vocab")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default="mini")
    args = ap.parse_args()
    import sacrebleu

    pairs = load_dataset("tuxpaint", args.split)
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
    print(
        f"\ntuxpaint {args.split} split: {len(pairs)} stamps, model {args.model}, captioner "
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
    print("\nexamples (stamp -> generated caption | reference):")
    for path, rec in examples:
        print(f"  {names[path].id}: {rec.caption!r} | {names[path].caption!r}")


if __name__ == "__main__":
    main()
