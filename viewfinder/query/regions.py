"""Where in an image a query matches: a coarse heatmap for any model, through its own image
encoder (no access to its internals needed, so open_clip, transformers and mini share it).

Occlusion: each cell of a grid over the image is greyed out in turn and the drop of the query's
score is measured; values are scaled to [0, 1] within the image (1 = where hiding the picture
costs the match most). Measured against stamps pasted onto photos at known places
(`scripts/eval_heatmaps.py`, docs/confidence.md): the peak falls in the pasted box for 0.50-0.53
of composites with mini (random: 0.06). Tried and measured worse on the same 40 composites:
scoring sliding windows against the query (0.10, commit b1a288b), greying 2 x 2 blocks of cells
(0.43), letterboxing the image onto a square first so that the model's centre crop cuts nothing
off (0.43; both: 0.38)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

GREY = (124, 116, 104)  # the ImageNet mean colour: greyed cells carry no signal


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


def region_heatmap(encoder, image: Image.Image, query: np.ndarray, cells: int = 8) -> Heatmap:
    """Where `image` matches the unit query vector `query`, on a grid of `cells` cells along the
    longer side. Costs one image encoding per cell, plus one (at most 65)."""
    image = image.convert("RGB")
    w, h = image.size
    rows, cols = grid_shape(w, h, cells)
    views = [image]
    for r in range(rows):
        for c in range(cols):
            view = image.copy()
            view.paste(GREY, (c * w // cols, r * h // rows, (c + 1) * w // cols, (r + 1) * h // rows))
            views.append(view)
    scores = encoder.encode_images(views) @ query
    raw = (scores[0] - scores[1:]).reshape(rows, cols)
    lo, hi = float(raw.min()), float(raw.max())
    return Heatmap((raw - lo) / (hi - lo) if hi - lo > 1e-9 else np.zeros_like(raw))


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
