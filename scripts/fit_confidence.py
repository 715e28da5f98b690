"""Fit mini's confidence on held-out data and measure it before/after on every test split.

    python scripts/fit_confidence.py             # 2 cores: about 2 min; needs extract_mini_v2_features.py
    python scripts/fit_confidence.py --choose-c  # the relevance fit's degree and penalty, cross-validated

For each evaluation set (tuxpaint, openclipart, emoji, fashion-mnist drawings; gcompris photos),
collections are built from one split alone, from the split plus up to 2,000 of the set's
training images, and from the split dealt into collections of 40 (three sizes), and every query
is judged with its relevant items present and again removed. Directions: text->image (a
caption's images), image->text (an image's caption among the collection's captions),
image->image (other images with the same caption, the query image left out;
`--image-relevance category`: the other images of its category). image->image also gets
real photos with their near-duplicates and other shots of their scene (scripts/eval_duplicates.py's
collection, among gcompris' training photos, and its originals alone), where those are what is
relevant. The validation splits fit one logistic model per direction (viewfinder/eval/calibration.py)
and its abstention threshold for the stated precision; the test splits measure it, beside a
degree-1 fit of the same hits.

Writes viewfinder/models/weights/mini_heads.calibration.json (unless --no-install), prints the
tables of docs/confidence.md, and draws docs/images/confidence_reliability.png."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np

from viewfinder.config import Config
from viewfinder.data.datasets import ImageTextPair, photo_split, split_of
from viewfinder.eval.calibration import (
    PENALTY,
    RELEVANCE_DEGREE,
    LabelledHits,
    abstention,
    confidences,
    expected_calibration_error,
    fit_direction,
    fit_logistic,
    fit_relevance,
    labelled_hits,
    presences,
    reliability_bins,
    select,
    threshold_for_precision,
)
from viewfinder.images import read_image
from viewfinder.models import load_encoder
from viewfinder.models.mini import calibration_file, shipped_heads_path
from viewfinder.query.confidence import (
    DIRECTIONS,
    FEATURES,
    SELF_SCORE,
    CalibratedConfidence,
    DirectionFit,
    ScoreTailConfidence,
)

SETS = ("tuxpaint", "openclipart", "emoji", "fashion", "gcompris")
# image->image only: a photo's copies and re-encodings and the other shots of its scene are its
# relevant images; the sets above have few images that share a caption, and none of the same
# picture, so alone they taught the fit that a photo's other shot is a weak match
VARIANTS = "photo variants"
# "subject absent" removes the query's whole category where the set has categories (a frog query
# in a collection with no animals), since a collection that only lacks the exact captioned item
# still holds look-alikes (a toad); emoji has no categories, so only its captioned items go.
NO_CATEGORIES = {"emoji"}
EXTRA_TRAIN = 2000
# a third size, small folders like the demo sample's 42 photos: the split dealt into collections of
# SMALL items (sets whose split holds more than twice that)
SMALL = 40
ROOT = Path(__file__).resolve().parents[1]


def load_sets(
    emb: "Embedder", features: Path
) -> dict[str, dict[str, list[tuple[str, str, str, np.ndarray]]]]:
    """set -> split -> [(id, caption, category, mini's image vector)]."""
    out: dict[str, dict[str, list]] = {s: {"train": [], "val": [], "test": []} for s in SETS}
    for name in ("drawings", "drawings-rest", "gcompris"):
        data = np.load(features / f"{name}.npz", allow_pickle=False)
        caps = json.loads((features / f"{name}.captions.json").read_text())
        images = emb.images(data["image"])  # one read: each data[key] decompresses anew
        for i, pid in enumerate(data["ids"].tolist()):
            dataset = pid.split("/")[0]
            split = photo_split(pid) if dataset == "gcompris" else ImageTextPair(pid, "", "", "", "").split
            caption, group = caps[pid]
            out[dataset][split].append((pid, caption, "" if dataset in NO_CATEGORIES else group, images[i]))
    return out


def variant_rows(emb: "Embedder", folder: Path) -> dict[str, list[tuple[str, str, str, np.ndarray]]]:
    """scripts/eval_duplicates.py's real photos (the demo sample's 42 photos, each with a copy and
    four re-encodings; opencv-doc's shots of three scenes), built under `folder`, as split ->
    [(path, its picture or scene, the same, mini's vector)], split half and half by picture."""
    from eval_duplicates import build

    _, _, scene = build(folder)
    paths = sorted(scene)
    vectors = []
    for start in range(0, len(paths), 32):
        # decoded as the product decodes them: EXIF orientation applied, any mode to RGB
        images = [read_image(Path(p), Config().max_pixels).image for p in paths[start : start + 32]]
        vectors.append(emb.encoder.encode_images(images))
    vectors = np.concatenate(vectors)
    out: dict[str, list] = {"val": [], "test": []}
    for path, vector in zip(paths, vectors):
        key = scene[path]
        out["val" if split_of(key, val=0.5, test=0.5) == "val" else "test"].append((path, key, key, vector))
    return out


class Embedder:
    """mini's final embeddings: images from cached frozen features through the heads, captions
    through the product's own text path (English tower or e5 by the language test)."""

    def __init__(self) -> None:
        self.encoder = load_encoder("mini", device="cpu", runtime="torch")
        self.encoder.ensure_loaded()
        self._texts: dict[str, np.ndarray] = {}

    def images(self, feats: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.encoder.heads.embed_image(torch.from_numpy(feats.astype(np.float32))).numpy()
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def texts(self, captions: list[str]) -> np.ndarray:
        todo = [c for c in dict.fromkeys(captions) if c not in self._texts]
        if todo:
            self._texts.update(zip(todo, self.encoder.encode_texts(todo)))
        return np.stack([self._texts[c] for c in captions])


def collection_hits(
    emb: Embedder,
    query_rows: list,
    extra_rows: list,
    seed: int,
    strict: bool = False,
    image_relevance: str = "caption",
    directions: tuple[str, ...] = DIRECTIONS,
) -> dict[str, LabelledHits]:
    """Labelled hits of every direction for queries from `query_rows`, over a collection of
    `query_rows` + `extra_rows`; absent cases remove the query's category (`strict`: only the
    items with its caption). An image query's relevant images are the others with its caption
    (`image_relevance="category"`: of its category, measured worse, docs/confidence.md)."""
    rows = query_rows + extra_rows
    captions = [r[1] for r in rows]
    images = np.stack([r[3] for r in rows])  # embedded by load_sets
    category_of = {r[1]: r[2] for r in rows}
    n_q = len(query_rows)
    unique = list(dict.fromkeys(captions))

    def grouped(keys: list[str]) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for i, key in enumerate(keys):
            out.setdefault(key, set()).add(i)
        return out

    members = grouped(captions)
    by_category = grouped([r[2] or r[1] for r in rows])
    text_by_category = grouped([category_of[c] or c for c in unique])

    def category(caption: str) -> str:
        return category_of[caption] or caption

    def absent(sets: list[set[int]]) -> list[set[int]] | None:
        return None if strict else sets

    out = {}
    query_caps = list(dict.fromkeys(captions[:n_q]))
    if "text->image" in directions:
        out["text->image"] = labelled_hits(
            emb.texts(query_caps),
            images,
            [members[c] for c in query_caps],
            "text->image",
            absent_removes=absent([by_category[category(c)] for c in query_caps]),
            seed=seed,
        )
    if "image->text" in directions:
        text_index = {c: j for j, c in enumerate(unique)}
        out["image->text"] = labelled_hits(
            images[:n_q],
            emb.texts(unique),
            [{text_index[c]} for c in captions[:n_q]],
            "image->text",
            absent_removes=absent([text_by_category[category(c)] for c in captions[:n_q]]),
            seed=seed,
        )
    out["image->image"] = labelled_hits(
        images[:n_q],
        images,
        [
            (members[c] if image_relevance == "caption" else by_category[category(c)]) - {i}
            for i, c in enumerate(captions[:n_q])
        ],
        "image->image",
        exclude=[{i} for i in range(n_q)],
        absent_removes=absent([by_category[category(c)] for c in captions[:n_q]]),
        seed=seed,
    )
    return out


def split_hits(
    emb: Embedder,
    sets: dict,
    split: str,
    seed: int,
    strict: bool = False,
    image_relevance: str = "caption",
    small: bool = True,
) -> dict[str, dict[str, LabelledHits]]:
    """set -> direction -> hits, over the split alone, the split plus training images and the
    split dealt into collections of SMALL; the photo variants also over their originals alone (a
    small library without copies)."""
    out = {}
    for k, name in enumerate(SETS + (VARIANTS,)):
        rows = sets[name][split]
        # a generator of its own for each split and set, and a seed of its own for each collection
        # (seeds counted up from the split's overlapped those of the other split's collections)
        rng = np.random.default_rng([seed, k])
        seeds = iter(rng.integers(2**32, size=3 + len(rows) // SMALL).tolist())
        # the photo variants among gcompris' training photos: a small photo library
        train = sets["gcompris" if name == VARIANTS else name]["train"]
        extra = [train[i] for i in rng.permutation(len(train))[:EXTRA_TRAIN]]
        directions = ("image->image",) if name == VARIANTS else DIRECTIONS
        parts = [
            collection_hits(emb, rows, [], next(seeds), strict, image_relevance, directions),
            collection_hits(emb, rows, extra, next(seeds), strict, image_relevance, directions),
        ]
        sizes = [len(rows), len(rows) + len(extra)]
        if small and len(rows) > 2 * SMALL:
            order = rng.permutation(len(rows))
            for start in range(0, len(rows) - SMALL + 1, SMALL):
                chunk = [rows[i] for i in order[start : start + SMALL]]
                parts.append(
                    collection_hits(emb, chunk, [], next(seeds), strict, image_relevance, directions)
                )
            sizes.append(f"{len(rows) // SMALL} x {SMALL}")
        if name == VARIANTS:
            # where other shots of a scene come first after the query's own picture, as in a
            # folder of originals (the copies' and re-encodings' files are named "{stem}__{how}")
            originals = [r for r in rows if "__" not in Path(r[0]).stem]
            alone = collection_hits(emb, originals, [], next(seeds), strict, image_relevance, directions)
            parts.append(alone)
            sizes.append(len(originals))
        out[name] = {
            d: functools.reduce(LabelledHits.extend, (part[d] for part in parts)) for d in directions
        }
        print(f"  {split} {name}: {len(rows)} queries, collections of {' and '.join(map(str, sizes))}")
    return out


def merged(per_set: dict[str, dict[str, LabelledHits]], direction: str) -> LabelledHits:
    """Every set's hits of one direction; each query weighs the same (weighing each set the same
    instead gave fashion-mnist's ten text queries the weight of openclipart's 500 and measured
    worse: text->image right top hits abstaining 0.13 -> 0.38)."""
    hits = LabelledHits()
    for by_dir in per_set.values():
        if direction in by_dir:
            hits = hits.extend(by_dir[direction])
    return hits


def cross_validated_ece(
    per_set: dict[str, dict[str, LabelledHits]], direction: str, degree: int, c: float, folds: int = 4
) -> dict[str, float]:
    """Each set's ECE under relevance fits made without its hits: the query cases (one query in
    one collection, subject present or removed) dealt into `folds` folds at random."""
    names = [n for n, by_dir in per_set.items() if direction in by_dir]
    hits = merged(per_set, direction)
    set_of = np.concatenate([np.full(len(per_set[n][direction].rank), k) for k, n in enumerate(names)])
    case = np.cumsum(hits.top)  # a query case's hits start at rank 1
    fold = np.random.default_rng(0).integers(0, folds, case.max() + 1)[case]
    conf = np.zeros(len(case))
    for f in range(folds):
        train, held = select(hits, fold != f), fold == f
        fit = fit_logistic(train.features, train.relevant, train.weight, degree, c)
        conf[held] = confidences(
            CalibratedConfidence({direction: DirectionFit(fit, fit, 0.5, 0.8)}), select(hits, held)
        )
    return {
        n: expected_calibration_error(conf[set_of == k], hits.relevant[set_of == k])
        for k, n in enumerate(names)
    }


def cross_validated_abstention(
    per_set: dict[str, dict[str, LabelledHits]], direction: str, degree: int, c: float, folds: int = 4
) -> tuple[float, float]:
    """Presence fitted at `degree` with its threshold, judged on held-out query cases: the share
    of absent subjects that abstain and of right rank-1 hits that abstain."""
    hits = merged(per_set, direction)
    top = select(hits, hits.top)
    top = select(top, top.known)
    fold = np.random.default_rng(0).integers(0, folds, len(top.rank))
    abstains = np.zeros(len(fold), bool)
    for f in range(folds):
        train, held = select(top, fold != f), fold == f
        fit = fit_logistic(train.features, train.answerable, train.weight, degree=degree, c=c)
        model = CalibratedConfidence({direction: DirectionFit(fit, fit, 0.5, 0.8)})
        threshold = threshold_for_precision(presences(model, train), train.answerable, 0.8)
        model = CalibratedConfidence({direction: DirectionFit(fit, fit, threshold, 0.8)})
        abstains[held] = [model.abstains(ctx, stats) for ctx, stats in select(top, held).contexts]
    return float(abstains[top.absent].mean()), float(abstains[top.relevant].mean())


def choose_c(val: dict[str, dict[str, LabelledHits]]) -> None:
    print(
        "\nRelevance: cross-validated ECE on the val splits (4 folds), per degree and penalty C; "
        f"shipped: degree {RELEVANCE_DEGREE} with C = {PENALTY[RELEVANCE_DEGREE]}"
    )
    print("| degree, C | direction | " + " | ".join(SETS + (VARIANTS,)) + " | worst set |")
    print("|---" * (len(SETS) + 4) + "|")
    for degree, c in ((1, PENALTY[1]), (2, 0.03), (2, 0.1), (2, 0.3), (2, 1.0)):
        for d in DIRECTIONS:
            ece = cross_validated_ece(val, d, degree, c)
            cells = [f"{ece[n]:.3f}" if n in ece else "-" for n in SETS + (VARIANTS,)]
            print(f"| {degree}, {c} | {d} | " + " | ".join(cells) + f" | {max(ece.values()):.3f} |")
    print(
        "\nPresence, cross-validated on the val splits (4 folds): "
        "absent subjects abstaining / right top hits abstaining"
    )
    print(f"| direction | degree 1, C = {PENALTY[1]} (shipped) | degree 2, C = {PENALTY[2]} |")
    print("|---|---|---|")
    for d in DIRECTIONS:
        cells = [cross_validated_abstention(val, d, degree, c) for degree, c in PENALTY.items()]
        print(f"| {d} | " + " | ".join(f"{a:.3f} / {r:.3f}" for a, r in cells) + " |")


def ece_table(title: str, test: dict, models: tuple, rank_one_too: bool = False) -> None:
    """Each model's ECE on every test split and direction, over all top-10 hits (and, with
    `rank_one_too`, over the rank-1 hits alone), the last model's in bold."""
    names = SETS + (VARIANTS,)
    print(f"\n{title}")
    print("| direction | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for d in DIRECTIONS:
        cells = []
        for name in names:
            hits = test[name].get(d)
            if hits is None:
                cells.append("-")
                continue
            groups = (hits, select(hits, hits.top)) if rank_one_too else (hits,)
            parts = [
                " / ".join(f"{expected_calibration_error(confidences(m, h), h.relevant):.3f}" for h in groups)
                for m in models
            ]
            cells.append(" -> ".join(parts[:-1] + [f"**{parts[-1]}**"]))
        print(f"| {d} | " + " | ".join(cells) + " |")


def degree_one(val: dict, test: dict, calibrated: CalibratedConfidence) -> None:
    """The shipped degree-2 relevance fits beside degree-1 fits of the same hits, on the test
    splits: ECE, and the image hits far above the next one (near-duplicates and other shots of a
    scene stand out so; in the drawing sets a stand-out is seldom another image of the caption)."""
    linear = CalibratedConfidence(
        {
            d: DirectionFit(fit_relevance(merged(val, d), 1), fit.present, fit.abstain_below, 0.8)
            for d, fit in calibrated.fits.items()
        }
    )
    ece_table(
        "Relevance fitted at degree 1 -> degree 2 (shipped), test splits: ECE of all top-10 hits",
        test,
        (linear, calibrated),
    )
    print(
        "\nimage->image hits more than one standard deviation above the next hit "
        "(not the query's own picture), test:"
    )
    print("| set | hits | relevant | mean confidence, degree 1 -> degree 2 |")
    print("|---|---|---|---|")
    for name in SETS + (VARIANTS,):
        hits = test[name]["image->image"]
        gap, score = (hits.features[:, FEATURES.index(f)] for f in ("z_above_next", "score"))
        stand_out = select(hits, (gap > 1) & (score < SELF_SCORE))
        if len(stand_out.rank):
            low, high = (confidences(m, stand_out).mean() for m in (linear, calibrated))
            share = stand_out.relevant.mean()
            print(f"| {name} | {len(stand_out.rank)} | {share:.2f} | {low:.2f} -> {high:.2f} |")


def two_sizes(emb: Embedder, sets: dict, calibrated: CalibratedConfidence, image_relevance: str) -> None:
    """The shipped fit on the test splits in the two sizes they had before the small collections
    joined (2026-11-26): ECE, and abstention over all sets."""
    test = split_hits(emb, sets, "test", seed=100, image_relevance=image_relevance, small=False)
    ece_table("The same fit, test splits in two sizes only: ECE of all top-10 hits", test, (calibrated,))
    print("\n| direction | subject absent: abstain | right top hits: abstain |")
    print("|---|---|---|")
    for d in DIRECTIONS:
        hits = merged(test, d)
        r = abstention(calibrated, select(hits, hits.top))
        print(f"| {d} | {r.absent_abstain_rate:.2f} ({r.absent_queries}) | {r.right_top_abstain_rate:.2f} |")


def draw(test: dict, models: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(SETS), figsize=(3.2 * len(SETS), 6.4), squeeze=False)
    for row, (label, model) in enumerate(models.items()):
        for col, name in enumerate(SETS):
            hits = test[name]["text->image"]
            conf = confidences(model, hits)
            bins = reliability_bins(conf, hits.relevant)
            ax = axes[row][col]
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
            ax.plot([b["mean_confidence"] for b in bins], [b["accuracy"] for b in bins], "o-")
            for b in bins:
                ax.annotate(
                    str(b["count"]),
                    (b["mean_confidence"], b["accuracy"]),
                    fontsize=7,
                    xytext=(3, -9),
                    textcoords="offset points",
                )
            ece = expected_calibration_error(conf, hits.relevant)
            ax.set_title(f"{name}, {label}\nECE {ece:.3f}", fontsize=9)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("confidence", fontsize=8)
            if col == 0:
                ax.set_ylabel("share relevant", fontsize=8)
    fig.suptitle("text->image hits (top 10, subject present and absent), test splits; numbers: hits per bin")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, default=ROOT / "data" / "features-v2")
    ap.add_argument(
        "--precision",
        type=float,
        default=0.8,
        help="share of non-abstaining queries whose subject is in the collection, on held-out data",
    )
    ap.add_argument(
        "--image-relevance",
        choices=["caption", "category"],
        default="caption",
        help="an image query's relevant images: those with its caption (default) or its category",
    )
    ap.add_argument(
        "--variants",
        type=Path,
        default=ROOT / "build" / "duplicates",
        help="where scripts/eval_duplicates.py's photo collection is built",
    )
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument(
        "--choose-c",
        action="store_true",
        help="print the val splits' cross-validated ECE per penalty C, and stop",
    )
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "images" / "confidence_reliability.png")
    args = ap.parse_args()

    emb = Embedder()
    sets = load_sets(emb, args.features)
    sets[VARIANTS] = variant_rows(emb, args.variants)
    val = split_hits(emb, sets, "val", seed=0, image_relevance=args.image_relevance)
    if args.choose_c:
        choose_c(val)
        return
    test = split_hits(emb, sets, "test", seed=100, image_relevance=args.image_relevance)
    fits = {d: fit_direction(merged(val, d), args.precision) for d in DIRECTIONS}
    calibrated = CalibratedConfidence(
        fits, source=f"scripts/fit_confidence.py on the val splits of {', '.join(SETS + (VARIANTS,))}"
    )
    before = ScoreTailConfidence()

    ece_table(
        "ECE (10 bins) on the test splits, all top-10 hits / rank-1 hits only; before -> after",
        test,
        (before, calibrated),
        rank_one_too=True,
    )

    degree_one(val, test, calibrated)
    two_sizes(emb, sets, calibrated, args.image_relevance)

    strict = split_hits(emb, sets, "test", seed=100, strict=True, image_relevance=args.image_relevance)
    print(
        "\nAbstention on the test splits (threshold chosen on val: the subject present in "
        f"{args.precision:.0%} of the queries answered)"
    )
    print(
        "| direction | set | model | threshold | subject absent: abstain | only its captioned items absent: "
        "abstain | right top hits: abstain | kept: top hit right | kept: subject present |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for d in DIRECTIONS:
        for name in SETS + (VARIANTS, "all"):
            if name in test and d not in test[name]:
                continue
            hits = merged(test, d) if name == "all" else test[name][d]
            hard = merged(strict, d) if name == "all" else strict[name][d]
            top, hard_top = select(hits, hits.top), select(hard, hard.top)
            for label, model in (("before", before), ("calibrated", calibrated)):
                r, h = abstention(model, top), abstention(model, hard_top)
                threshold = model.fits[d].abstain_below if label == "calibrated" else model.abstain_below
                print(
                    f"| {d} | {name} | {label} | {threshold:.2f} | {r.absent_abstain_rate:.2f} "
                    f"({r.absent_queries}) | {h.absent_abstain_rate:.2f} ({h.absent_queries}) | "
                    f"{r.right_top_abstain_rate:.2f} ({r.right_top_queries}) | {r.kept_precision:.2f} | "
                    f"{r.kept_present:.2f} |"
                )

    print(
        "\nimage->image queries with no other image of their caption (images of their kind remain; "
        "neither present nor absent, so not fitted on): share that abstain, calibrated"
    )
    for name in SETS:
        top = select(test[name]["image->image"], test[name]["image->image"].top)
        unknown = ~top.known
        if unknown.any():
            abstains = np.array([calibrated.abstains(ctx, stats) for ctx, stats in top.contexts])
            print(f"  {name}: {abstains[unknown].mean():.2f} of {int(unknown.sum())}")

    draw(test, {"before": before, "calibrated": calibrated}, args.figure)
    print(f"\nwrote {args.figure}")
    if not args.no_install:
        path = calibration_file(shipped_heads_path())
        path.write_text(calibrated.to_json() + "\n", encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
