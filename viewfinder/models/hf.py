"""transformers dual encoders (CLIPModel, SiglipModel and kin) by hub id or local directory."""

from __future__ import annotations

from .torch_encoder import TorchEncoder


class HFClipEncoder(TorchEncoder):
    def __init__(self, spec: str, name_or_path: str, device: str = "auto") -> None:
        super().__init__(spec, device)
        self._name = name_or_path
        self._processor = None

    def _load(self, device: str) -> None:
        from transformers import AutoModel, AutoProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-tensor bar on every CLI call is noise

        self.model = AutoModel.from_pretrained(self._name).to(device)
        self._processor = AutoProcessor.from_pretrained(self._name)
        # SigLIP was trained with max-length padding; CLIP does not care.
        self._padding = "max_length" if "siglip" in type(self.model).__name__.lower() else True

    def image_transform(self):
        self.ensure_loaded()
        return _ProcessorTransform(self._processor.image_processor)

    def _image_features(self, pixels):
        return _as_tensor(self.model.get_image_features(pixel_values=pixels))

    def _text_features(self, texts: list[str]):
        tok = self._processor.tokenizer(texts, padding=self._padding, truncation=True, return_tensors="pt")
        return _as_tensor(self.model.get_text_features(**{k: v.to(self.device) for k, v in tok.items()}))

    def modules(self) -> list:
        return [self.model]

    def save(self, out) -> str:
        """Write the (fine-tuned) model and its processor; returns the spec that loads them."""
        self.model.save_pretrained(out)
        self._processor.save_pretrained(out)
        return f"hf:{out}"


def _as_tensor(out):
    # transformers 5 may return a model output object where 4.x returned the pooled tensor.
    return out if hasattr(out, "shape") else out.pooler_output


class _ProcessorTransform:
    """A picklable PIL -> tensor callable around a transformers image processor."""

    def __init__(self, image_processor) -> None:
        self.image_processor = image_processor

    def __call__(self, image):
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]
