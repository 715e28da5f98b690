"""Where in an image a query matches: a coarse heatmap for any model, through its own image
encoder (no access to its internals needed, so open_clip, transformers and mini share it).

Two ways, measured against pasted objects at known places (scripts/eval_heatmaps.py,
docs/confidence.md):
- "windows": embed square windows that slide over the whole image (several sizes) and score each
  against the query; a cell's value is the best score of the windows that cover it. It sees the
  whole picture even where the model's own centre crop would cut the sides off.
- "occlusion": grey out each cell in turn and measure how much the whole image's score drops.
Values are scaled to [0, 1] within the image (1 = where the query matches best)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

METHODS = ("windows", "occlusion")
WINDOW_SIZES = (0.4, 0.6)  # window sides, as shares of the image's shorter side
GREY = (124, 116, 104)  # the ImageNet mean colour: occluded cells carry no signal


@dataclass(frozen=True)
class Heatmap:
    values: np.ndarray  # (rows, cols) in [0, 1]; row 0 is the top of the image
    raw: np.ndarray  # the unscaled scores (cosines, or score drops for occlusion)

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

    def summary(self) -> str:
        """Where it is strongest, in words ("strongest in the upper left")."""
        x, y = self.peak()
        vertical = "upper" if y < 1 / 3 else "lower" if y > 2 / 3 else "middle"
        horizontal = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "centre"
        if vertical == "middle" and horizontal == "centre":
            return "strongest in the centre"
        if vertical == "middle":
            return f"strongest on the {horizontal}"
        return f"strongest in the {vertical} {'' if horizontal == 'centre' else horizontal}".rstrip()

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


def _scaled(raw: np.ndarray) -> np.ndarray:
    lo, hi = float(raw.min()), float(raw.max())
    return (raw - lo) / (hi - lo) if hi - lo > 1e-9 else np.zeros_like(raw)


def _windows(encoder, image: Image.Image, query: np.ndarray, rows: int, cols: int) -> np.ndarray:
    w, h = image.size
    boxes = []
    for share in WINDOW_SIZES:
        side = max(1, int(share * min(w, h)))
        xs = np.linspace(0, w - side, max(2, round(w / side * 2) - 1)).astype(int)
        ys = np.linspace(0, h - side, max(2, round(h / side * 2) - 1)).astype(int)
        boxes += [(int(x), int(y), int(x) + side, int(y) + side) for y in ys for x in xs]
    scores = encoder.encode_images([image.crop(b) for b in boxes]) @ query
    best = np.full((rows, cols), -np.inf)
    for (x0, y0, x1, y1), s in zip(boxes, scores):
        r0, r1 = int(y0 * rows / h), max(int(np.ceil(y1 * rows / h)), int(y0 * rows / h) + 1)
        c0, c1 = int(x0 * cols / w), max(int(np.ceil(x1 * cols / w)), int(x0 * cols / w) + 1)
        best[r0:r1, c0:c1] = np.maximum(best[r0:r1, c0:c1], s)
    best[~np.isfinite(best)] = float(scores.min())
    return best


def _occlusion(encoder, image: Image.Image, query: np.ndarray, rows: int, cols: int) -> np.ndarray:
    w, h = image.size
    views = [image]
    for r in range(rows):
        for c in range(cols):
            view = image.copy()
            box = (c * w // cols, r * h // rows, (c + 1) * w // cols, (r + 1) * h // rows)
            view.paste(GREY, box)
            views.append(view)
    scores = encoder.encode_images(views) @ query
    return (scores[0] - scores[1:]).reshape(rows, cols)


def region_heatmap(
    encoder, image: Image.Image, query: np.ndarray, method: str = "windows", cells: int = 8
) -> Heatmap:
    """Where `image` matches the unit query vector `query`, on a grid with `cells` cells along
    the longer side."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: use one of {', '.join(METHODS)}")
    image = image.convert("RGB")
    rows, cols = grid_shape(*image.size, cells)
    raw = (_windows if method == "windows" else _occlusion)(encoder, image, query, rows, cols)
    return Heatmap(_scaled(raw), raw)


def overlay(image: Image.Image, heat: Heatmap, strength: float = 0.6) -> Image.Image:
    """The image with the heatmap laid over it in red (smoothly upsampled), for people to see."""
    image = image.convert("RGB")
    mask = Image.fromarray((heat.values * 255).astype(np.uint8), "L").resize(
        image.size, Image.Resampling.BILINEAR
    )
    alpha = np.asarray(mask, np.float32)[..., None] / 255.0 * strength
    base = np.asarray(image, np.float32)
    red = np.array([230.0, 30.0, 30.0], np.float32)
    return Image.fromarray((base * (1 - alpha) + red * alpha).astype(np.uint8), "RGB")
