"""open_clip models: any architecture with a pretrained tag (downloaded by open_clip on a connected
machine), a local checkpoint file, or a local directory in open_clip's hub layout."""

from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import ModelSpecError
from .torch_encoder import TorchEncoder


class OpenClipEncoder(TorchEncoder):
    """`name` is an architecture (`ViT-B-32`) or `local-dir:/path`; `pretrained` a tag, a file or None."""

    def __init__(self, spec: str, name: str, pretrained: str | None, device: str = "auto") -> None:
        super().__init__(spec, device)
        self._name = name
        self._pretrained = pretrained
        self._preprocess = None

    def _load(self, device: str) -> None:
        import open_clip

        try:
            self.model, _, self._preprocess = open_clip.create_model_and_transforms(
                self._name, pretrained=self._pretrained, device=device
            )
        except RuntimeError as exc:
            if "not found" not in str(exc) or self._name.startswith("local-dir:"):
                raise
            # open_clip's own message lists every architecture it knows: thousands of characters
            close = difflib.get_close_matches(self._name, open_clip.list_models(), n=3, cutoff=0.4)
            raise ModelSpecError(
                f"{self.spec}: open_clip has no architecture {self._name!r}"
                + (f"; did you mean {', '.join(close)}?" if close else "")
                + " (python -c 'import open_clip; print(open_clip.list_models())' lists them)"
            ) from None
        self._tokenizer = open_clip.get_tokenizer(self._name)

    def image_transform(self):
        self.ensure_loaded()
        return self._preprocess

    def _image_features(self, pixels):
        return self.model.encode_image(pixels)

    def _text_features(self, texts: list[str]):
        return self.model.encode_text(self._tokenizer(texts).to(self.device))

    def modules(self) -> list:
        return [self.model]

    def save(self, out: Path) -> str:
        return save_open_clip(self, out)


def save_open_clip(encoder: OpenClipEncoder, out: Path) -> str:
    """Write the (fine-tuned) model in open_clip's hub layout; returns the spec that loads it."""
    import json

    import open_clip
    import torch

    out.mkdir(parents=True, exist_ok=True)
    if encoder._name.startswith("local-dir:"):
        config = json.loads((Path(encoder._name[len("local-dir:") :]) / "open_clip_config.json").read_text())
    else:
        config = {"model_cfg": open_clip.get_model_config(encoder._name)}
        pp = getattr(encoder.model.visual, "preprocess_cfg", None)
        if pp:
            config["preprocess_cfg"] = dict(pp)
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    torch.save(encoder.model.state_dict(), out / "open_clip_pytorch_model.bin")
    return f"open_clip:{out}"
