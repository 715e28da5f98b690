"""Contrastive training (symmetric InfoNCE with a learnable temperature) for any encoder.

Encoders with frozen towers (mini) train on cached tower outputs: the frozen part runs once per
image, the trainable heads many times. Others (open_clip, transformers) train end to end on
pixels. Either way: seeded, mixed precision on GPU, a checkpoint per epoch that a rerun resumes
from, validation text->image recall after each epoch, early stopping on it, and the best weights
saved where the model factory loads them back."""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.datasets import ImageTextPair, caption_groups, load_image
from ..data.features import PairFeatures, PairImages, frozen_features
from ..eval.metrics import recall_at_k


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0
    patience: int = 6  # epochs without a better validation recall before stopping
    val_k: int = 5
    max_steps: int | None = None  # stop after this many optimiser steps (quick runs and tests)


@dataclass
class TrainResult:
    spec: str
    best_epoch: int
    best_val_recall: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def info_nce(image_emb, text_emb, logit_scale, caption_ids=None):
    """Symmetric InfoNCE. Pairs sharing a caption are all positives of each other (a batch of
    fashion photos holds many 'a photo of a coat'): the target spreads evenly over them."""
    import torch
    import torch.nn.functional as F

    scale = logit_scale.exp().clamp(max=100.0)
    logits = scale * image_emb @ text_emb.T
    n = logits.shape[0]
    if caption_ids is None:
        target = torch.eye(n, device=logits.device)
    else:
        target = (caption_ids[:, None] == caption_ids[None, :]).float()
    target = target / target.sum(dim=1, keepdim=True)
    loss_i = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t = -(target * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (loss_i + loss_t) / 2


def text_to_image_recall(
    image_emb: np.ndarray, text_emb: np.ndarray, captions: Sequence[str], k: int
) -> float:
    """R@k of unique captions as queries against all images (the images with that caption are relevant)."""
    unique, rows, relevant = caption_groups(captions)
    sims = text_emb[rows] @ image_emb.T
    order = np.argsort(-sims, axis=1)[:, :k]
    return recall_at_k({c: order[j].tolist() for j, c in enumerate(unique)}, relevant, k)


class _Trainer:
    def __init__(self, encoder, cfg: TrainConfig, out: Path, progress: bool) -> None:
        import torch

        self.encoder, self.cfg, self.out, self.progress = encoder, cfg, out, progress
        torch.manual_seed(cfg.seed)
        encoder.ensure_loaded()
        self.device = encoder.device
        self.modules = encoder.trainable_modules()
        self.params = [p for m in self.modules for p in m.parameters() if p.requires_grad]
        self.scale = encoder.logit_scale()
        if self.scale is None:
            self.scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07), device=self.device))
            self.params.append(self.scale)
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def state(self) -> dict:
        return {
            "modules": [m.state_dict() for m in self.modules],
            "scale": self.scale.detach().cpu(),
            "opt": self.opt.state_dict(),
        }

    def load_state(self, state: dict) -> None:
        import torch

        for m, sd in zip(self.modules, state["modules"]):
            m.load_state_dict(sd)
        with torch.no_grad():
            self.scale.copy_(state["scale"].to(self.scale.device))
        self.opt.load_state_dict(state["opt"])

    def autocast(self):
        import contextlib

        import torch

        return (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device == "cuda"
            else contextlib.nullcontext()
        )

    def set_train(self, on: bool) -> None:
        for m in self.modules:
            m.train(on)


def train(
    encoder,
    train_data: Sequence[ImageTextPair] | PairFeatures,
    val_data: Sequence[ImageTextPair] | PairFeatures,
    out: Path,
    cfg: TrainConfig = TrainConfig(),
    progress: bool = True,
) -> TrainResult:
    """Train `encoder`'s trainable part; resumes from `out/checkpoint.pt` when one is there."""
    import torch
    from tqdm import tqdm

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t = _Trainer(encoder, cfg, out, progress)
    epoch_batches, evaluate = _batches_and_validation(encoder, train_data, val_data, t, progress)
    ckpt = out / "checkpoint.pt"
    history: list[dict] = []
    best = (-1.0, -1, None)  # (recall, epoch, state)
    start_epoch, steps = 0, 0
    if ckpt.exists():
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        if _resumable(saved.get("config", {}), asdict(cfg)):
            t.load_state(saved["state"])
            history, start_epoch, steps = saved["history"], saved["epoch"] + 1, saved["steps"]
            best = (saved["best"][0], saved["best"][1], saved["best_state"])
            torch.set_rng_state(saved["rng"])
    bar = tqdm(
        range(start_epoch, cfg.epochs),
        desc="training",
        unit="epoch",
        disable=not progress,
        initial=start_epoch,
        total=cfg.epochs,
    )
    for epoch in bar:
        losses, steps = _one_epoch(t, epoch_batches, steps)
        recall = evaluate()
        history.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(losses)) if losses else float("nan"),
                f"val_R@{cfg.val_k}": recall,
                "temperature": float(1 / t.scale.detach().exp()),
            }
        )
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", val=f"{recall:.3f}")
        if recall > best[0]:
            best = (recall, epoch, copy.deepcopy(t.state()))
        state = {
            "config": asdict(cfg),
            "state": t.state(),
            "history": history,
            "epoch": epoch,
            "steps": steps,
        }
        torch.save(
            {**state, "best": best[:2], "best_state": best[2], "rng": torch.get_rng_state()},
            ckpt.with_suffix(".tmp"),
        )
        ckpt.with_suffix(".tmp").replace(ckpt)  # atomic: a kill mid-save keeps the last checkpoint
        if epoch - best[1] >= cfg.patience or (cfg.max_steps and steps >= cfg.max_steps):
            break
    bar.close()
    if best[2] is not None:
        t.load_state(best[2])
    t.set_train(False)
    spec = encoder.save(out)
    (out / "history.json").write_text(
        json.dumps({"best_epoch": best[1], "best_val_recall": best[0], "history": history}, indent=2)
    )
    return TrainResult(spec, best[1], best[0], history, time.perf_counter() - started)


def _batches_and_validation(encoder, train_data, val_data, t: "_Trainer", progress: bool):
    """(a function giving one epoch's loss closures, a function giving the validation recall):
    on cached frozen-tower features where the encoder has a frozen part, else on pixels."""
    if encoder.frozen_image_tower()[0] is None:
        return _pixel_batches(list(train_data), t), lambda: _pixel_val_recall(list(val_data), t)

    def features(data):
        return data if isinstance(data, PairFeatures) else frozen_features(encoder, data, progress=progress)

    train_f, val_f = features(train_data), features(val_data)
    return _feature_batches(train_f, t), lambda: _feature_val_recall(val_f, t)


def _one_epoch(t: "_Trainer", epoch_batches, steps: int) -> tuple[list[float], int]:
    """Train one epoch (or up to cfg.max_steps in all); returns its losses and the step count."""
    t.set_train(True)
    losses = []
    for loss_fn in epoch_batches():
        with t.autocast():
            loss = loss_fn()
        t.opt.zero_grad(set_to_none=True)
        loss.backward()
        t.opt.step()
        losses.append(float(loss.detach()))
        steps += 1
        if t.cfg.max_steps and steps >= t.cfg.max_steps:
            break
    t.set_train(False)
    return losses, steps


def _resumable(saved: dict, now: dict) -> bool:
    """A checkpoint continues a run with the same settings; more epochs or patience may be asked for."""
    free = {"epochs", "patience", "max_steps"}
    return {k: v for k, v in saved.items() if k not in free} == {
        k: v for k, v in now.items() if k not in free
    }


# -- frozen towers: batches of cached features ----------------------------------------------------
def _feature_batches(feats: PairFeatures, t: _Trainer):
    import torch

    img = torch.from_numpy(feats.image).to(t.device)
    txt = torch.from_numpy(feats.text).to(t.device)
    _, cap_ids = np.unique(np.array(feats.captions), return_inverse=True)
    caps = torch.from_numpy(cap_ids).to(t.device)
    _, image_head = t.encoder.frozen_image_tower()
    _, text_head = t.encoder.frozen_text_tower()
    n, bs = len(feats.ids), t.cfg.batch_size

    def batches():
        order = torch.randperm(n, device=t.device)
        for i in range(0, n - 1, bs):
            idx = order[i : i + bs]
            if len(idx) < 2:
                continue

            def loss(idx=idx):
                ie = torch.nn.functional.normalize(image_head(img[idx]).float(), dim=-1)
                te = torch.nn.functional.normalize(text_head(txt[idx]).float(), dim=-1)
                return info_nce(ie, te, t.scale, caps[idx])

            yield loss

    return batches


def _feature_val_recall(feats: PairFeatures, t: _Trainer) -> float:
    import torch

    _, image_head = t.encoder.frozen_image_tower()
    _, text_head = t.encoder.frozen_text_tower()
    with torch.no_grad():
        ie = (
            torch.nn.functional.normalize(
                image_head(torch.from_numpy(feats.image).to(t.device)).float(), dim=-1
            )
            .cpu()
            .numpy()
        )
        te = (
            torch.nn.functional.normalize(
                text_head(torch.from_numpy(feats.text).to(t.device)).float(), dim=-1
            )
            .cpu()
            .numpy()
        )
    return text_to_image_recall(ie, te, feats.captions, t.cfg.val_k)


# -- end to end: batches of pixels --------------------------------------------------------------
def _pixel_batches(pairs: list[ImageTextPair], t: _Trainer):
    import torch

    _, cap_ids = np.unique(np.array([p.caption for p in pairs]), return_inverse=True)
    g = torch.Generator().manual_seed(t.cfg.seed)
    loader = torch.utils.data.DataLoader(
        PairImages(pairs, t.encoder.image_transform(), with_index=True),
        batch_size=t.cfg.batch_size,
        shuffle=True,
        generator=g,
        drop_last=len(pairs) > t.cfg.batch_size,
    )

    def batches():
        for pixels, idx in loader:

            def loss(pixels=pixels, idx=idx):
                ie = torch.nn.functional.normalize(
                    t.encoder._image_features(pixels.to(t.device)).float(), dim=-1
                )
                te = torch.nn.functional.normalize(
                    t.encoder._text_features([pairs[i].caption for i in idx.tolist()]).float(), dim=-1
                )
                return info_nce(ie, te, t.scale, torch.from_numpy(cap_ids[idx.numpy()]).to(t.device))

            yield loss

    return batches


def _pixel_val_recall(pairs: list[ImageTextPair], t: _Trainer) -> float:
    images = t.encoder.encode_images([load_image(p, size=256) for p in pairs])
    texts = t.encoder.encode_texts([p.caption for p in pairs])
    return text_to_image_recall(images, texts, [p.caption for p in pairs], t.cfg.val_k)
