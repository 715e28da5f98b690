"""The few layers `mini`'s torch-free path runs in numpy: its projection heads (LayerNorm,
exact-erf GELU, Linear), the same arithmetic as the torch modules they mirror; the tests check
the heads' output against torch's to 1e-4."""

from __future__ import annotations

import numpy as np


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf, and scipy is not a
    dependency of the core install."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def gelu(x: np.ndarray) -> np.ndarray:
    """torch's default (exact) GELU."""
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def linear(x: np.ndarray, state: dict, prefix: str) -> np.ndarray:
    return x @ state[f"{prefix}.weight"].T + state[f"{prefix}.bias"]
