"""Metrics of `mini` against its untrained baseline (same towers, random heads) on every test
split, and the fine-tuning demonstration on the held-out openclipart categories.

    python scripts/eval_mini.py --report artifacts/eval        # ~3 min on CPU with cached features
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from viewfinder.data.datasets import load_dataset
from viewfinder.data.features import frozen_features
from viewfinder.eval.report import evaluate
from viewfinder.models import load_encoder
from viewfinder.train.contrastive import TrainConfig, train

SETS = ("tuxpaint", "openclipart", "emoji", "fashion-mnist", "photos")
COLUMNS = [
    ("text_to_image", "R@1"),
    ("text_to_image", "R@5"),
    ("text_to_image", "R@10"),
    ("text_to_image", "MRR"),
    ("text_to_image", "nDCG@10"),
    ("image_to_text", "R@1"),
    ("image_to_text", "R@5"),
]


def row(dataset: str, model: str, metrics: dict) -> str:
    cells = [f"{metrics[d][m]:.3f}" for d, m in COLUMNS]
    extra = f"{metrics['zero_shot_accuracy']:.3f}" if "zero_shot_accuracy" in metrics else ""
    return f"| {dataset} | {model} | {metrics['pairs']} | " + " | ".join(cells) + f" | {extra} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=Path, default=Path("data/features"))
    ap.add_argument("--report", type=Path, default=Path("artifacts/eval"))
    ap.add_argument("--skip-finetune", action="store_true")
    args = ap.parse_args()
    header = (
        "| data (test split) | model | pairs | t->i R@1 | t->i R@5 | t->i R@10 | t->i MRR | t->i nDCG@10 | "
        "i->t R@1 | i->t R@5 | zero-shot acc |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    results = {}
    for spec in ("mini", "mini:random"):
        encoder = load_encoder(spec, runtime="torch")  # cached frozen features are torch's
        for name in SETS:
            cache = args.features / f"{name}.npz" if (args.features / f"{name}.npz").exists() else None
            report = args.report / f"{name}-{spec.replace(':', '-')}" if spec == "mini" else None
            res = evaluate(name, encoder, "test", report, cache)
            results[f"{name}/{spec}"] = res.metrics
            lines.append(row(name, spec, res.metrics))
    print("\n".join(lines))

    if not args.skip_finetune:
        lines = [
            "\n| held-out openclipart categories (test split) | t->i R@1 | t->i R@5 | t->i MRR | i->t R@1 | "
            "i->t R@5 |",
            "|---|---|---|---|---|---|",
        ]
        base = load_encoder("mini", runtime="torch")
        cache = args.features / "openclipart-held-out.npz"
        before = evaluate("openclipart-held-out", base, "test", None, cache).metrics
        pairs = load_dataset("openclipart-held-out")
        train_f = frozen_features(base, [p for p in pairs if p.split == "train"], cache=cache)
        val_f = frozen_features(base, [p for p in pairs if p.split == "val"], cache=cache)
        out = Path("build/finetune-held-out")
        shutil.rmtree(out, ignore_errors=True)
        started = time.time()
        res = train(
            base,
            train_f,
            val_f,
            out,
            TrainConfig(epochs=30, batch_size=64, lr=3e-4, patience=6),
            progress=False,
        )
        tuned = load_encoder(res.spec, runtime="torch")
        after = evaluate(
            "openclipart-held-out", tuned, "test", args.report / "held-out-finetuned", cache
        ).metrics
        for label, m in (
            ("mini (before)", before),
            (f"fine-tuned ({res.seconds:.0f} s, best epoch {res.best_epoch})", after),
        ):
            lines.append(
                f"| {label} | "
                + " | ".join(
                    f"{m[d][k]:.3f}"
                    for d, k in [
                        ("text_to_image", "R@1"),
                        ("text_to_image", "R@5"),
                        ("text_to_image", "MRR"),
                        ("image_to_text", "R@1"),
                        ("image_to_text", "R@5"),
                    ]
                )
                + " |"
            )
        results["finetune"] = {"before": before, "after": after, "train_seconds": time.time() - started}
        print("\n".join(lines))
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / "summary.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
