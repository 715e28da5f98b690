"""The recipe that produces mini's heads (viewfinder/models/weights/mini_heads.safetensors), and
the comparison of the designs and data sources it was chosen from.

    python scripts/extract_mini_v2_features.py   # frozen-tower features, once (~25 min on 2 cores)
    python scripts/train_mini.py --compare   # every variant below, one table; installs the chosen one
    python scripts/train_mini.py             # the chosen variant alone, installed into the package

Training pairs (train splits only; the evaluation sets are never trained on):
- drawings: tuxpaint, openclipart (a subsample), emoji and fashion-mnist, each caption also in the
  short forms people type ("dog face", "a drawing of a chimpanzee");
- real photos: gcompris' labelled photos and 3 augmented views of each, captioned by their label
  ("gorilla", "a photo of a gorilla"; the activities' descriptions as captions too measured worse
  on the val splits, docs/mini.md);
- unlabelled wallpaper photos (4 views each), captioned by the ImageNet classifier's top class
  ("a photo of a lakeside") where it is at least 30% sure;
- composites: tuxpaint stamps pasted onto wallpaper photos, captioned by the stamp's caption.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np

from viewfinder.data.datasets import ImageTextPair, photo_split
from viewfinder.data.features import PairFeatures
from viewfinder.eval.harness import PairEmbeddings, retrieval
from viewfinder.models import load_encoder
from viewfinder.models.classifier import class_names
from viewfinder.models.mini import (
    HeadsConfig,
    adopted_fingerprints,
    build_heads,
    files_fingerprint,
    read_heads_config,
    save_heads,
    shipped_heads_path,
    v1_heads_path,
)
from viewfinder.train.contrastive import TrainConfig, train

DRAWINGS = ("tuxpaint", "openclipart", "emoji", "fashion")
VARIANTS = {
    # name: (heads config, data sources). Not trained: v1's shipped heads, and the floor: v1's
    # heads with the classifier's class path through v1's text head mixed in evenly.
    "v1 (shipped heads)": (HeadsConfig(), ()),
    "floor: v1 heads + class path, fixed even mix": (HeadsConfig(class_path=True), ()),
    "DINOv2 + classifier features + class path (v2)": (
        HeadsConfig(image_features="dino+classifier", class_path=True, multilingual=True, e5_share_head=True),
        ("drawings", "photos", "wallpapers", "composites"),
    ),
    "DINOv2 + class path, learnt gate": (
        HeadsConfig(class_path=True),
        ("drawings", "photos", "wallpapers", "composites"),
    ),
    "DINOv2 + classifier features": (
        HeadsConfig(image_features="dino+classifier"),
        ("drawings", "photos", "wallpapers", "composites"),
    ),
    "v2, linear heads": (
        HeadsConfig(image_features="dino+classifier", class_path=True, hidden=0),
        ("drawings", "photos", "wallpapers", "composites"),
    ),
    "v2 without real photos": (
        HeadsConfig(image_features="dino+classifier", class_path=True),
        ("drawings", "wallpapers", "composites"),
    ),
    "v2 without wallpaper pseudo-labels": (
        HeadsConfig(image_features="dino+classifier", class_path=True),
        ("drawings", "photos", "composites"),
    ),
    "v2 without composites": (
        HeadsConfig(image_features="dino+classifier", class_path=True),
        ("drawings", "photos", "wallpapers"),
    ),
    "v2 drawings only": (HeadsConfig(image_features="dino+classifier", class_path=True), ("drawings",)),
    # fashion-mnist kept out of training and validation: its column is then zero-shot
    "v2 without fashion-mnist (zero-shot on it)": (
        HeadsConfig(image_features="dino+classifier", class_path=True),
        ("drawings", "photos", "wallpapers", "composites", "zero-shot:fashion"),
    ),
}
CHOSEN = "DINOv2 + classifier features + class path (v2)"
PSEUDO_LABEL_MIN = 0.3


def phrasings(caption: str, dataset: str, group: str = "") -> list[str]:
    """The caption as given plus the short forms people search with."""
    out = [caption]
    if dataset == "openclipart":
        name = re.sub(r"\s*\(.*\)$", "", caption).strip()
        out += [name, f"a drawing of {name}"]
    elif dataset == "emoji":
        out += [f"an emoji of {caption}", f"{caption} icon"]
    elif dataset == "tuxpaint":
        plain = caption.rstrip(".").strip()
        out += [plain.lower(), f"a picture of {plain[0].lower() + plain[1:]}"]
    elif dataset == "fashion":
        out += [group, f"a {group}"]
    elif dataset in ("gcompris", "composite"):
        plain = caption.rstrip(".").strip()
        out += [f"a photo of {'the ' if plain[:1].isupper() else 'a '}{plain}"]
    return list(dict.fromkeys(p for p in out if p))


def load(features: Path, name: str) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """One extracted set: id -> frozen image features, id -> [caption, group]."""
    data = np.load(features / f"{name}.npz", allow_pickle=False)
    stack = data["image"]  # each access of an npz member reads and inflates it again: once
    images = {pid: stack[i].astype(np.float32) for i, pid in enumerate(data["ids"].tolist())}
    return images, json.loads((features / f"{name}.captions.json").read_text())


_TEXT_CACHE: dict[str, np.ndarray] = {}  # the English tower is frozen: one pass per caption


def text_features(encoder, texts: list[str]) -> np.ndarray:
    import torch

    frozen, _ = encoder.frozen_text_tower()
    todo = list(dict.fromkeys(t for t in texts if t not in _TEXT_CACHE))
    with torch.inference_mode():
        for i in range(0, len(todo), 512):
            chunk = todo[i : i + 512]
            _TEXT_CACHE.update(zip(chunk, frozen(chunk).float().cpu().numpy()))
    return np.stack([_TEXT_CACHE[t] for t in texts])


def as_features(encoder, rows: list[tuple[np.ndarray, list[str], str]]) -> PairFeatures:
    """(image features, its captions, id) rows -> one training pair per caption."""
    ids, images, captions = [], [], []
    for image, texts, pid in rows:
        for text in texts:
            ids.append(pid)
            images.append(image)
            captions.append(text)
    return PairFeatures(ids, np.stack(images), text_features(encoder, captions), captions)


def pseudo_label(image: np.ndarray, names: list[str]) -> str | None:
    logits = image[-1000:]
    prob = np.exp(logits - logits.max())
    prob /= prob.sum()
    return f"a photo of a {names[int(prob.argmax())]}" if prob.max() >= PSEUDO_LABEL_MIN else None


def rows_for(features: Path, sources: tuple[str, ...], names: list[str]) -> tuple[list, list]:
    """(train rows, validation rows) of (image features, captions, id) for the data sources."""
    train_rows, val_rows = [], []
    unseen = {s.split(":", 1)[1] for s in sources if s.startswith("zero-shot:")}
    images, caps = load(features, "drawings")
    if (features / "drawings-rest.npz").exists():  # the rest of openclipart's train split
        more_images, more_caps = load(features, "drawings-rest")
        images, caps = {**images, **more_images}, {**caps, **more_caps}
    for pid, (caption, group) in caps.items():
        dataset = pid.split("/")[0]
        split = ImageTextPair(pid, caption, group, "", "").split
        if dataset in unseen:
            continue
        if split == "val":
            val_rows.append((images[pid], [caption], pid))
        elif split == "train" and "drawings" in sources:
            train_rows.append((images[pid], phrasings(caption, dataset, group), pid))
    images, caps = load(features, "gcompris")
    views, _ = load(features, "gcompris-views")
    for pid, (caption, _group) in caps.items():
        split = photo_split(pid)
        if split == "val":
            val_rows.append((images[pid], [caption], pid))
        elif split == "train" and "photos" in sources:
            texts = phrasings(caption, "gcompris")
            train_rows += [(images[pid], texts, pid)] + [
                (views[f"{pid}#view{v}"], texts, pid) for v in range(3)
            ]
    if "wallpapers" in sources:
        images, _ = load(features, "wallpaper-views")
        for pid, image in images.items():
            label = pseudo_label(image, names)
            if label:
                train_rows.append((image, [label], pid.split("#")[0]))
    if "composites" in sources:
        images, caps = load(features, "composites")
        train_rows += [
            (images[pid], phrasings(caption, "composite"), pid) for pid, (caption, _) in caps.items()
        ]
    return train_rows, val_rows


_ENCODER = []  # one set of frozen towers for every variant


def make_encoder(cfg: HeadsConfig, names: list[str]):
    import torch

    if not _ENCODER:
        _ENCODER.append(load_encoder("mini:random", device="cpu"))
        _ENCODER[0].ensure_loaded()
    encoder = _ENCODER[0]
    torch.manual_seed(0)
    heads = build_heads(cfg)
    if cfg.class_path:
        prompts = [f"a photo of a {n}" for n in names]
        heads.class_text.copy_(torch.from_numpy(text_features(encoder, prompts)))
    encoder.use_heads(heads, "cpu")
    return encoder


def test_sets(features: Path, split: str = "test") -> dict[str, tuple[PairFeatures, list[ImageTextPair]]]:
    """Evaluation sets: real photos (gcompris' split, our photo queries, tuxpaint-data
    templates) and the drawings' split; image features from the extracted caches. The photo
    queries and templates have no val part: split="val" leaves them out."""
    out = {}
    images, caps = load(features, "gcompris")
    drawings, drawing_caps = load(features, "drawings")
    chosen = {
        f"gcompris, all ({split})": (images, {k: v for k, v in caps.items() if photo_split(k) == split}),
        # the vocabulary activity's pictures are cartoons, the rest real photos
        f"gcompris real photos ({split})": (
            images,
            {k: v for k, v in caps.items() if photo_split(k) == split and "/lang/" not in k},
        ),
        f"gcompris vocabulary drawings ({split})": (
            images,
            {k: v for k, v in caps.items() if photo_split(k) == split and "/lang/" in k},
        ),
    }
    if split == "test":
        photos, photo_caps = load(features, "photos")
        templates, template_caps = load(features, "templates")
        chosen["our photo queries"] = (photos, photo_caps)
        chosen["tuxpaint-data photos"] = (templates, template_caps)
    for dataset in ("tuxpaint", "openclipart", "emoji", "fashion"):
        part = {
            k: v
            for k, v in drawing_caps.items()
            if k.split("/")[0] == dataset and ImageTextPair(k, "", "", "", "").split == split
        }
        chosen[f"{dataset} ({split})"] = (drawings, part)
    for name, (imgs, cap) in chosen.items():
        pairs = [ImageTextPair(k, c, g, "", "") for k, (c, g) in cap.items()]
        out[name] = (
            PairFeatures(
                [p.id for p in pairs], np.stack([imgs[p.id] for p in pairs]), None, [p.caption for p in pairs]
            ),
            pairs,
        )
    return out


PROMPT_ENSEMBLE = ("{}", "a photo of {}", "a picture of {}")


def evaluate(
    encoder,
    sets: dict,
    prompts: tuple[str, ...] = ("{}",),
    features: Path | None = None,
    product: bool = False,
) -> dict[str, dict]:
    """Retrieval metrics on each set (every query English); with several `prompts`, each query is
    the normalised mean of its phrasings' embeddings (a prompt ensemble). With `features` and
    heads whose e5_share is set, queries add that share of the e5 path (or of the e5 head of their
    own, `e5_share_head`), as the product does for the queries its language test finds English.
    With `product`, every query takes the product's own path, language test included."""
    import torch

    _, image_head = encoder.frozen_image_tower()
    _, text_head = encoder.frozen_text_tower()
    encoder.heads.eval()
    norm = torch.nn.functional.normalize
    share = encoder.heads.config.e5_share if encoder.heads.config.multilingual and features else 0.0
    out = {}
    with torch.no_grad():
        for name, (feats, pairs) in sets.items():
            te = 0
            for template in prompts:
                phrased = [template.format(c) for c in feats.captions]
                if product:
                    te = te + norm(torch.from_numpy(encoder.encode_texts(phrased)), dim=-1)
                    continue
                query = norm(text_head(torch.from_numpy(text_features(encoder, phrased))), dim=-1)
                if share:
                    head = (
                        encoder.heads.e5_english
                        if encoder.heads.config.e5_share_head
                        else encoder.heads.e5_text
                    )
                    e5 = norm(head(torch.from_numpy(e5_queries(encoder, phrased, features))), dim=-1)
                    query = norm(query + share * e5, dim=-1)
                te = te + query
            ie = norm(image_head(torch.from_numpy(feats.image)), dim=-1).numpy()
            out[name] = retrieval(PairEmbeddings(pairs, ie, norm(te, dim=-1).numpy()))
    return out


def run_variant(name: str, features: Path, out: Path, epochs: int, names: list[str]):
    cfg, sources = VARIANTS[name]
    encoder = make_encoder(cfg, names)
    if not sources:  # v1 as shipped, or the floor built on it
        from safetensors.torch import load_file

        encoder.heads.load_state_dict(load_file(str(v1_heads_path())), strict=False)
        encoder.heads.eval()
        return encoder, None, PairFeatures([], np.zeros((0, 1)), np.zeros((0, 1)), [])
    train_rows, val_rows = rows_for(features, sources, names)
    train_f, val_f = as_features(encoder, train_rows), as_features(encoder, val_rows)
    if out.exists():
        shutil.rmtree(out)  # a recipe run starts from scratch (resume is for interrupted runs)
    tc = TrainConfig(epochs=epochs, batch_size=512, lr=1e-3, weight_decay=0.1, patience=8)
    result = train(encoder, train_f, val_f, out, tc, progress=False)
    return encoder, result, train_f


# -- multilingual queries ----------------------------------------------------------------------
LANGUAGES = ("fr", "de", "es", "it", "pt", "ru", "zh_CN", "zh_TW", "ja", "pl", "nl", "uk")
ENGLISH = ("en", "en_AU", "en_GB", "en_CA", "en_ZA")
# The language test is fitted on 4,000 English captions and 400 sentences in each of these
# languages: fitted on all ~77 (many that e5 barely knows, such as Aragonese), it sent
# "il gatto" and "ein roter Apfel" down the English path
TEST_LANGUAGES = LANGUAGES + ("ca", "cs", "sv", "da", "fi", "hu", "tr", "el", "ko", "ro")
# The e5 head trains on up to this many English captions and every train-split translation in
# every language the sets have (~77); docs/mini.md compares it with the earlier recipe (4,000
# English captions, 400 sentences in each of 22 languages, distillation only)
ENGLISH_SENTENCES = 20000
MULTILINGUAL_EPOCHS = 20


def translated_pairs(split: str, emoji: bool = True) -> list[tuple[str, str, str]]:
    """(pair id, language, text) for the tuxpaint, emoji (unless `emoji=False`) and gcompris pairs
    of `split` with translations. Emoji names come in ~120 languages (CLDR); only TEST_LANGUAGES'
    and English are taken, since each text costs an e5 encoding (about 7 ms on 2 cores)."""
    from viewfinder.data.datasets import emoji_translations, gcompris_translations, tuxpaint_translations

    out = []
    for pid, table in tuxpaint_translations().items():
        if ImageTextPair(pid, "", "", "", "").split == split:
            out += [(pid, lang, text) for lang, text in table.items()]
    for pid, table in emoji_translations().items() if emoji else []:
        if ImageTextPair(pid, "", "", "", "").split == split:
            out += [(pid, lang, text) for lang, text in table.items() if lang in TEST_LANGUAGES + ("en",)]
    for pid, table in gcompris_translations().items():
        if photo_split(pid) == split:
            out += [(pid, lang, text) for lang, text in table.items()]
    return out


_E5_CACHE: dict[Path, dict[str, np.ndarray]] = {}  # cache file -> its vectors, read once a run


def e5_queries(encoder, texts: list[str], features: Path) -> np.ndarray:
    """e5 "query:" vectors of `texts`, cached beside the features (the e5 tower is frozen, and at
    about 140 short sentences/s on 2 cores the ~68,000 training texts take 8 minutes). The file
    (180 MB) is read once per run: every evaluation asks for its queries' vectors."""
    cache_file = features / "e5-queries.npz"
    if cache_file not in _E5_CACHE:
        _E5_CACHE[cache_file] = {}
        if cache_file.exists():
            data = np.load(cache_file)
            _E5_CACHE[cache_file].update(zip(data["texts"].tolist(), data["vecs"]))
    cache = _E5_CACHE[cache_file]
    todo = list(dict.fromkeys(t for t in texts if t not in cache))
    for i in range(0, len(todo), 256):
        cache.update(zip(todo[i : i + 256], encoder.e5.queries(todo[i : i + 256])))
    if todo:
        kept = list(cache)
        np.savez(cache_file, texts=np.array(kept), vecs=np.stack([cache[t] for t in kept]))
    return np.stack([cache[t] for t in texts])


def train_multilingual(
    encoder,
    english_captions: dict[str, str],
    english_rows: list[tuple[str, str]],
    images: dict[str, np.ndarray],
    features: Path,
    seed: int = 0,
    emoji: bool = False,
) -> None:
    """Fit the e5 head and the language test on English training captions
    (`english_rows`: caption, pair id) and the translations' train split (`emoji`: with the emoji
    names'). The head's output is pulled towards where the English head puts the English caption
    (distillation) and, contrastively, towards the pair's image through the frozen image head: the
    image term lifted every language's MRR (docs/mini.md), since the English head is itself an
    imperfect target."""
    import random

    import torch

    rng = random.Random(seed)
    torch.manual_seed(seed)
    rows: list[tuple[str, str, str, str]] = []  # (text, its English caption, language, pair id)
    sample = rng.sample(english_rows, min(ENGLISH_SENTENCES, len(english_rows)))
    rows += [(t, t, "en", pid) for t, pid in sample]
    by_lang: dict[str, list] = {}
    for pid, lang, text in translated_pairs("train", emoji):
        if pid in english_captions and pid in images:
            by_lang.setdefault(lang, []).append((text, english_captions[pid], pid))
    for lang, items in by_lang.items():
        if lang in ENGLISH:
            items = rng.sample(items, min(200, len(items)))
        rows += [(t, e, lang, p) for t, e, p in items]
    norm = torch.nn.functional.normalize
    e5 = torch.from_numpy(e5_queries(encoder, [r[0] for r in rows], features))
    heads = encoder.heads
    pids = sorted({r[3] for r in rows})
    position = {p: i for i, p in enumerate(pids)}
    image_of = torch.tensor([position[r[3]] for r in rows])
    with torch.no_grad():
        targets = norm(heads.text(torch.from_numpy(text_features(encoder, [r[1] for r in rows]))), dim=-1)
        pictures = norm(heads.embed_image(torch.from_numpy(np.stack([images[p] for p in pids]))), dim=-1)
        scale = heads.logit_scale.exp()
    for module in heads.e5_text.modules():  # from scratch, whatever the heads held before
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    opt = torch.optim.AdamW(heads.e5_text.parameters(), lr=1e-3, weight_decay=0.01)
    heads.train()
    for _epoch in range(MULTILINGUAL_EPOCHS):
        order = torch.randperm(len(rows))
        for i in range(0, len(rows), 256):
            idx = order[i : i + 256]
            pred = norm(heads.e5_text(e5[idx]), dim=-1)
            distil = (1 - (pred * targets[idx]).sum(-1)).mean()
            to_text = torch.nn.functional.cross_entropy(pred @ targets[idx].T / 0.05, torch.arange(len(idx)))
            # rows of the same pair (translations of one caption) are all positives of its image
            same = (image_of[idx, None] == image_of[None, idx]).float()
            log_p = torch.log_softmax(pred @ pictures[image_of[idx]].T * scale, dim=1)
            to_image = -(log_p * same / same.sum(1, keepdim=True)).sum(1).mean()
            loss = distil + 0.1 * to_text + to_image
            opt.zero_grad()
            loss.backward()
            opt.step()
    heads.eval()
    english = [i for i, r in enumerate(rows) if r[2] in ENGLISH]
    picked = rng.sample(english, min(4000, len(english)))
    for lang in TEST_LANGUAGES:
        theirs = [i for i, r in enumerate(rows) if r[2] == lang]
        picked += rng.sample(theirs, min(400, len(theirs)))
    chosen = torch.tensor(picked)
    is_english = torch.tensor([float(rows[i][2] in ENGLISH) for i in picked])
    fit_language_test(heads.language, e5[chosen], is_english)


def fit_language_test(layer, e5, english) -> None:
    """Logistic regression "is this query English?" on standardised e5 vectors (they differ in
    little: cosines run 0.75-0.95), classes weighted to balance, by L-BFGS; the standardisation is
    folded into `layer` so that inference needs none. The decision point is then moved to where
    99% of the English training captions stay on the English side: a query wrongly sent to the
    e5 path costs English quality, which must not drop."""
    import torch

    mean, std = e5.mean(0), e5.std(0) + 1e-6
    x = (e5 - mean) / std
    weight = torch.where(english > 0, 0.5 / english.mean(), 0.5 / (1 - english.mean()))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, english, reduction="none")
            * weight
        ).mean()
        loss = loss + 1e-3 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        keep = torch.quantile((x @ w + b)[english > 0], 0.01)
        layer.weight.copy_((w / std)[None, :])
        layer.bias.copy_(b - keep - (w * mean / std).sum())


def language_mrr(
    encoder, features: Path, split: str = "test", encode=None
) -> dict[str, tuple[int, dict[str, float]]]:
    """Set -> (its images, {query language: text->image MRR}) on the translated pairs of `split`
    (tuxpaint stamps, emoji and gcompris photos, each query among the images of its set), queries
    encoded as the product does, or by `encode(texts, language)`."""
    import torch

    from viewfinder.eval.metrics import retrieval_report

    drawings, drawing_caps = load(features, "drawings")
    photos, photo_caps = load(features, "gcompris")
    images = {**drawings, **photos}
    translated = translated_pairs(split)
    english = {pid: caption for pid, (caption, _) in {**drawing_caps, **photo_caps}.items()}
    # an emoji's caption is its Unicode name ("smiling face with open mouth"); its translations
    # are of CLDR's English short name ("grinning face with big eyes"), the English to compare with
    english.update({pid: text for pid, lang, text in translated if lang == "en" and pid.startswith("emoji/")})
    queries = [(pid, "en", caption) for pid, caption in english.items()]
    queries += [q for q in translated if q[1] in LANGUAGES]
    out = {}
    for group in ("tuxpaint", "emoji", "gcompris"):
        ids = sorted({pid for pid, _, _ in translated if pid.startswith(group) and pid in images})
        with torch.no_grad():
            ie = torch.nn.functional.normalize(
                encoder.heads.embed_image(torch.from_numpy(np.stack([images[i] for i in ids]))), dim=-1
            ).numpy()
        mrr = {}
        for lang in ("en",) + LANGUAGES:
            qs = [(pid, text) for pid, lg, text in queries if lg == lang and pid in ids]
            if qs:
                texts = [t for _, t in qs]
                te = encode(texts, lang) if encode else encoder.encode_texts(texts)
                ranks = {str(n): [ids[j] for j in np.argsort(-(te[n] @ ie.T))] for n in range(len(qs))}
                relevant = {str(n): {pid} for n, (pid, _) in enumerate(qs)}
                mrr[lang] = retrieval_report(ranks, relevant, (5,))["MRR"]
        out[group] = (len(ids), mrr)
    return out


def language_header(first: str) -> str:
    """The header row of `language_table`'s rows, its first cell `first`."""
    return f"| {first} | " + " | ".join(("en",) + LANGUAGES) + " | within 0.1 of en |"


def language_table(encoder, features: Path, split: str = "test", encode=None) -> list[str]:
    """Table rows of `language_mrr` on the `split` splits, each with how many languages are
    within 0.1 MRR of English (the issue's target)."""
    rows = []
    for group, (n, mrr) in language_mrr(encoder, features, split, encode).items():
        cells = " | ".join(f"{mrr[lang]:.3f}" if lang in mrr else "" for lang in ("en",) + LANGUAGES)
        near = sum(mrr["en"] - v <= 0.1 for lang, v in mrr.items() if lang != "en")
        rows.append(f"| {group} {split} ({n} images) | {cells} | {near} of {len(mrr) - 1} |")
    return rows


@contextlib.contextmanager
def routed(encoder, english: bool):
    """Every query takes the English path (`english`) or the other languages' e5 path meanwhile,
    whatever the language test and the word list say."""
    from viewfinder.models import mini

    bias, words = encoder.heads.language.bias.data.clone(), mini.english_looking
    encoder.heads.language.bias.data.fill_(1e4 if english else -1e4)
    mini.english_looking = lambda texts: np.full(len(texts), english)
    try:
        yield
    finally:
        encoder.heads.language.bias.data.copy_(bias)
        mini.english_looking = words


def routing_bound(names: list[str], features: Path) -> None:
    """How near other languages come to English through the installed heads: with the product's
    routing, with every query routed by the language it is known to be in (the best any language
    test could do), and with every query, English too, on the e5 path (--routing-bound)."""
    encoder = installed_encoder(names)

    def routed_by(english_if):
        def encode(texts: list[str], lang: str):
            with routed(encoder, english_if(lang)):
                return encoder.encode_texts(texts)

        return encode

    header = language_header("queries routed")
    for split in ("val", "test"):
        print(f"\nText->image MRR per query language, {split} splits:\n{header}", flush=True)
        for label, encode in (
            ("by the product (language test and word list)", None),
            ("by the language each query is known to be in", routed_by(lambda lang: lang == "en")),
            ("every query on the e5 path (English too)", routed_by(lambda lang: False)),
        ):
            for row in language_table(encoder, features, split, encode):
                print(f"| {label}: {row[2:]}", flush=True)


E5_ENSEMBLES = (0.0, 0.5, 1.0)


def choose_e5_ensemble(encoder, features: Path) -> None:
    """How much of the English share's e5 head queries in other languages add to the e5 path's
    vector: the value with the best mean text->image MRR over the other languages and the three
    translated sets' val splits, kept in the heads' config."""
    means = {}
    for weight in E5_ENSEMBLES:
        encoder.heads.config = dataclasses.replace(encoder.heads.config, e5_ensemble=weight)
        per_set = language_mrr(encoder, features, "val")
        means[weight] = float(
            np.mean([np.mean([v for lang, v in mrr.items() if lang != "en"]) for _, mrr in per_set.values()])
        )
    best = max(E5_ENSEMBLES, key=lambda weight: means[weight])
    encoder.heads.config = dataclasses.replace(encoder.heads.config, e5_ensemble=best)
    print("\nOther languages' e5 path plus a share of the English share's e5 head, mean val MRR of the")
    print("other languages: " + ", ".join(f"{w}: {m:.3f}" for w, m in means.items()) + f" -> {best}")


E5_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)


def choose_e5_share(encoder, features: Path) -> None:
    """How much of the e5 path English queries add to the English tower's vector: the share with
    the best mean text->image MRR over the val splits, kept in the heads' config; the test sets
    with none and with it are printed."""
    val, test = test_sets(features, "val"), test_sets(features, "test")
    means = {}
    for share in E5_SHARES:
        encoder.heads.config = dataclasses.replace(encoder.heads.config, e5_share=share)
        metrics = evaluate(encoder, val, features=features)
        # gcompris counted once, by its photos and its drawings, not again as a whole
        scores = [
            m["text_to_image"]["MRR"] for name, m in metrics.items() if not name.startswith("gcompris, all")
        ]
        means[share] = float(np.mean(scores))
    best = max(E5_SHARES, key=lambda share: means[share])
    print("\nEnglish queries plus a share of the e5 path, mean val text->image MRR:")
    print(", ".join(f"{share}: {mean:.3f}" for share, mean in means.items()) + f" -> {best}")
    print("| English queries | " + " | ".join(f"{s} MRR / R@5" for s in test) + " |")
    for share in sorted({0.0, best}):
        encoder.heads.config = dataclasses.replace(encoder.heads.config, e5_share=share)
        print(
            f"| e5 share {share} | {metric_cells(evaluate(encoder, test, features=features))} |", flush=True
        )


def multilingual_stage(
    encoder,
    features: Path,
    english_rows: list[tuple[str, str, np.ndarray]],
    spec: str,
    adopts: set[str] = frozenset(),
) -> None:
    """Train the e5 paths and the language test on the English training rows (caption, pair id,
    image features) and the translations, save the heads (recording `adopts`: fingerprints of
    earlier heads with the same image side), print the per-language tables. Two e5 heads: the
    one English queries add a share of, trained on tuxpaint's and gcompris' translations, and
    the path of other languages, trained on the emoji names' too (which lifted every language on
    emoji but, as English's share, cost English MRR on tuxpaint and gcompris: docs/mini.md); other
    languages then add a share of the first (an ensemble), chosen on the val splits."""
    drawings, drawing_caps = load(features, "drawings")
    photos, photo_caps = load(features, "gcompris")
    english = {pid: c for pid, (c, _) in {**drawing_caps, **photo_caps}.items()}
    images = {**drawings, **photos, **{pid: image for _, pid, image in english_rows}}
    rows = [(c, pid) for c, pid, _ in english_rows]
    train_multilingual(encoder, english, rows, images, features)
    encoder.heads.e5_english.load_state_dict(encoder.heads.e5_text.state_dict())
    choose_e5_share(encoder, features)
    train_multilingual(encoder, english, rows, images, features, emoji=True)
    choose_e5_ensemble(encoder, features)
    save_heads(encoder.heads, Path(spec.split("@", 1)[1]), adopts=json.dumps(sorted(adopts)))
    header = language_header("query language")
    config = encoder.heads.config
    encoder.heads.config = dataclasses.replace(config, e5_share=0.0)
    with routed(encoder, english=True):  # every query through the English tower
        print("\nText->image MRR per query language, English tower only:\n" + header)
        print("\n".join(language_table(encoder, features)))
    encoder.heads.config = config
    print("\nwith the e5 path for queries the language test finds non-English:\n" + header)
    print("\n".join(language_table(encoder, features)), flush=True)


def install(spec: str) -> None:
    shutil.copy2(Path(spec.split("@", 1)[1]), shipped_heads_path())
    print(f"installed {shipped_heads_path()} ({shipped_heads_path().stat().st_size / 1e6:.1f} MB)")


# what an image's vector depends on: retraining anything else keeps the indexes built before
IMAGE_SIDE = ("image.", "text.", "class_text", "gate")


def same_image_side(heads: Path, earlier: list[Path]) -> set[str]:
    """The fingerprints (and what they adopted) of `earlier` heads files, each checked to hold
    the same image side as `heads`: indexes built with them stay valid for the heads trained
    from here (only the query side changes)."""
    from safetensors.torch import load_file

    mine = {k: v for k, v in load_file(str(heads)).items() if k.startswith(IMAGE_SIDE)}
    found = set()
    for path in earlier:
        theirs = {k: v for k, v in load_file(str(path)).items() if k.startswith(IMAGE_SIDE)}
        if theirs.keys() != mine.keys() or any(not (theirs[k] == mine[k]).all() for k in mine):
            raise SystemExit(
                f"{path}: its image side differs from {heads}; indexes built with it need reindex"
            )
        found |= {files_fingerprint(path)} | adopted_fingerprints(path)
    return found


def rerun_multilingual(args, names: list[str]) -> None:
    """Only the multilingual stage, on the chosen variant's trained heads (--multilingual-only)."""
    from safetensors.torch import load_file

    path = args.out / re.sub(r"\W+", "-", CHOSEN) / "mini_heads.safetensors"
    encoder = make_encoder(VARIANTS[CHOSEN][0], names)
    # heads trained before the English share had its own e5 head lack it: the stage trains it
    missing = encoder.heads.load_state_dict(load_file(str(path)), strict=False).missing_keys
    assert all(k.startswith("e5_english.") for k in missing), missing
    adopts = same_image_side(path, [path] + args.adopt)
    train_rows, _ = rows_for(args.features, VARIANTS[CHOSEN][1], names)
    english_rows = [(t, pid, image) for image, texts, pid in train_rows for t in texts]
    multilingual_stage(encoder, args.features, english_rows, f"mini@{path}", adopts)
    if not args.no_install:
        install(f"mini@{path}")


def metric_cells(metrics: dict[str, dict]) -> str:
    return " | ".join(
        f"{m['text_to_image']['MRR']:.3f} / {m['text_to_image']['R@5']:.3f}" for m in metrics.values()
    )


def installed_encoder(names: list[str]):
    """mini with the heads installed in the package, in eval mode."""
    from safetensors.torch import load_file

    encoder = make_encoder(read_heads_config(shipped_heads_path()), names)
    encoder.heads.load_state_dict(load_file(str(shipped_heads_path())))
    encoder.heads.eval()
    return encoder


def evaluate_shipped(sets: dict, args, names: list[str]) -> None:
    """One table row each for v1, the floor and the installed heads (as typed and as a prompt
    ensemble), on every test set, and the installed heads' per-language table, with nothing
    trained (--shipped)."""
    print("| heads | " + " | ".join(f"{s} MRR / R@5" for s in sets) + " |")
    print("|---" * (1 + len(sets)) + "|")
    for name in ("v1 (shipped heads)", "floor: v1 heads + class path, fixed even mix"):
        encoder, _, _ = run_variant(name, args.features, args.out, 0, names)
        print(f"| {name} | {metric_cells(evaluate(encoder, sets))} |", flush=True)
    encoder = installed_encoder(names)
    installed = metric_cells(evaluate(encoder, sets, features=args.features))
    print(f"| installed ({shipped_heads_path().name}) | {installed} |")
    # what users get: the language test sends some English queries (names such as "Bayterek",
    # "Castillo de San Marcos") down the other languages' path
    routed = metric_cells(evaluate(encoder, sets, features=args.features, product=True))
    print(f"| installed, queries through the product's path (language test consulted) | {routed} |")
    ensemble = metric_cells(evaluate(encoder, sets, PROMPT_ENSEMBLE, features=args.features))
    print(f"| installed, queries as a prompt ensemble {PROMPT_ENSEMBLE} | {ensemble} |", flush=True)
    print("\nText->image MRR per query language, installed heads:")
    print(language_header("query language"))
    print("\n".join(language_table(encoder, args.features)), flush=True)
    # the val splits, where routing choices are made (docs/mini.md)
    val_sets = test_sets(args.features, "val")
    print("\n| installed, the product's path, val splits | " + " | ".join(val_sets) + " |")
    print(f"| | {metric_cells(evaluate(encoder, val_sets, features=args.features, product=True))} |")
    print(language_header("query language (val)"))
    print("\n".join(language_table(encoder, args.features, "val")), flush=True)


def photo_ranks(encoder, feats: PairFeatures) -> dict[str, list[int]]:
    """Each query of a set (its distinct captions) -> the ranks of its photos among the set's,
    every query through the product's path."""
    import torch

    queries = sorted(set(feats.captions))
    with torch.no_grad():
        _, image_head = encoder.frozen_image_tower()
        ie = torch.nn.functional.normalize(image_head(torch.from_numpy(feats.image)), dim=-1).numpy()
    out = {}
    for q, row in zip(queries, encoder.encode_texts(queries) @ ie.T):
        order = list(np.argsort(-row))
        out[q] = sorted(order.index(j) + 1 for j, c in enumerate(feats.captions) if c == q)
    return out


def sweep_noun_share(args, names: list[str]) -> None:
    """The installed heads with each share of the noun table's classes (`noun_classes`), every
    query through the product's path: mean MRR / R@5 of the val sets (where the share is chosen),
    each test set, and the gcompris real-photo test queries whose rank moves (--noun-shares)."""
    encoder = installed_encoder(names)
    val, test = test_sets(args.features, "val"), test_sets(args.features, "test")
    feats, pairs = test["gcompris real photos (test)"]
    print("| share | val: mean MRR / R@5 | " + " | ".join(f"{s} MRR / R@5" for s in test) + " |")
    print("|---" * (2 + len(test)) + "|")
    ranks = {}
    for share in args.noun_shares:
        encoder.noun_share = share
        metrics = evaluate(encoder, val, features=args.features, product=True)
        mean = [np.mean([m["text_to_image"][k] for m in metrics.values()]) for k in ("MRR", "R@5")]
        cells = metric_cells(evaluate(encoder, test, features=args.features, product=True))
        print(f"| {share} | {mean[0]:.3f} / {mean[1]:.3f} | {cells} |", flush=True)
        for q, r in photo_ranks(encoder, feats).items():
            ranks.setdefault(q, []).append(r[0])
    print(f"\nRank of the right photo among the {len(pairs)} gcompris real test photos, where it moves:")
    for q, r in ranks.items():
        if len(set(r)) > 1:
            print(f"  {q}: " + " / ".join(map(str, r)))


def print_photo_ranks(names: list[str], features: Path) -> None:
    """The installed heads on the gcompris real-photo test split, query by query: the ranks of
    its photos, its R@5, and what R@5 would be if every query found what the top 5 can hold
    (--photo-ranks)."""
    feats, pairs = test_sets(features)["gcompris real photos (test)"]
    ranks = photo_ranks(installed_encoder(names), feats)
    print(f"Ranks of each query's photos among the {len(pairs)} gcompris real test photos (R@5):")
    for q, r in sorted(ranks.items(), key=lambda item: -item[1][0]):
        print(f"  {q}: {r} ({sum(x <= 5 for x in r) / len(r):.2f})")
    recall = np.mean([sum(x <= 5 for x in r) / len(r) for r in ranks.values()])
    ceiling = np.mean([min(5, len(r)) / len(r) for r in ranks.values()])
    print(f"R@5 {recall:.3f} over {len(ranks)} queries; with every query perfect {ceiling:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=Path, default=Path("data/features-v2"))
    ap.add_argument("--out", type=Path, default=Path("build/mini"))
    ap.add_argument("--compare", action="store_true", help="train every variant, print one table")
    ap.add_argument(
        "--variant", default=CHOSEN, choices=list(VARIANTS), help="the variant to train and install"
    )
    ap.add_argument(
        "--only", nargs="+", choices=list(VARIANTS), help="train and print these variants, install none"
    )
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--no-install", action="store_true", help="do not copy the heads into the package")
    ap.add_argument(
        "--multilingual-only", action="store_true", help="redo the multilingual stage of the chosen heads"
    )
    ap.add_argument(
        "--adopt",
        type=Path,
        nargs="*",
        default=[],
        help="with --multilingual-only: earlier heads files (same image side) whose indexes stay valid",
    )
    ap.add_argument(
        "--shipped",
        action="store_true",
        help="evaluate v1, the floor and the installed heads on every test set; train nothing",
    )
    ap.add_argument(
        "--routing-bound",
        action="store_true",
        help="per-language MRR of the installed heads with the product's routing and with each query "
        "routed by its known language; train nothing",
    )
    ap.add_argument(
        "--photo-ranks",
        action="store_true",
        help="the installed heads' rank of every gcompris real-photo test query's photos; train nothing",
    )
    ap.add_argument(
        "--noun-shares",
        type=float,
        nargs="+",
        help="evaluate the installed heads at these shares of the noun table's classes; train nothing",
    )
    args = ap.parse_args()
    names = class_names()
    if args.noun_shares:
        return sweep_noun_share(args, names)
    if args.routing_bound:
        return routing_bound(names, args.features)
    if args.photo_ranks:
        return print_photo_ranks(names, args.features)
    if args.multilingual_only:
        return rerun_multilingual(args, names)
    sets = test_sets(args.features)
    if args.shipped:
        return evaluate_shipped(sets, args, names)
    chosen = list(VARIANTS) if args.compare else args.only or [args.variant]
    if args.only:
        args.no_install = True
    print("| variant | pairs | val R@5 | " + " | ".join(f"{s} MRR / R@5" for s in sets) + " |")
    print("|---" * (3 + len(sets)) + "|")
    for name in chosen:
        started = time.time()
        encoder, result, train_f = run_variant(
            name, args.features, args.out / re.sub(r"\W+", "-", name), args.epochs, names
        )
        val = f"{result.best_val_recall:.3f}" if result else ""
        print(
            f"| {name} | {len(train_f.ids)} | {val} | {metric_cells(evaluate(encoder, sets))} |"
            f"  ({time.time() - started:.0f} s)",
            flush=True,
        )
        if name == CHOSEN:
            ensemble = metric_cells(evaluate(encoder, sets, PROMPT_ENSEMBLE))
            print(f"| {name}, queries as a prompt ensemble {PROMPT_ENSEMBLE} | | | {ensemble} |")
        if result and encoder.heads.config.multilingual:
            english_rows = list(zip(train_f.captions, train_f.ids, train_f.image))
            multilingual_stage(encoder, args.features, english_rows, result.spec)
        if name == args.variant and not args.no_install:
            install(result.spec)


if __name__ == "__main__":
    main()
