"""The model-spec grammar, written once: what a spec string may look like and what it names.

The factory builds encoders from a parsed `ModelSpec`; the faces show `SPEC_HELP`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelSpecError

# (form, meaning): the table behind the docstring of `parse_spec` and the faces' help text.
SPEC_FORMS = (
    ("mini", "the project's offline model (v2 heads: photos, drawings, multilingual queries)"),
    ("mini@v1", "mini's first heads (drawings only, English queries)"),
    ("mini@HEADS.safetensors", "mini with fine-tuned heads"),
    ("mini:random", "mini's towers with random heads (the untrained baseline)"),
    ("open_clip:ARCH/TAG", "architecture + pretrained tag (open_clip downloads it)"),
    ("open_clip:ARCH@CKPT", "architecture + a local checkpoint file"),
    ("open_clip:DIR", "open_clip's hub layout on disk (open_clip_config.json + weights)"),
    ("hf:ID", "transformers CLIPModel / SiglipModel by hub id"),
    ("hf:DIR", "the same from a local directory"),
)
SPEC_HELP = "use " + ", ".join(f"'{form}'" for form, _ in SPEC_FORMS if form != "mini:random")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec. `family`: mini | open_clip | hf. `name`: the open_clip architecture
    (`local-dir:PATH` for a hub-layout folder), the hf id or folder, "" for mini. `weights`: the
    open_clip tag or checkpoint, mini's heads file, "random" for random mini heads, or None."""

    text: str
    family: str
    name: str = ""
    weights: str | None = None


def _is_path(value: str) -> bool:
    return value.startswith(("/", ".", "~"))


def parse_spec(spec: str) -> ModelSpec:
    """Parse (and check the local files of) a model spec; forms as in `SPEC_FORMS`."""
    text = spec.strip()
    if text == "mini:random":
        return ModelSpec(text, "mini", weights="random")
    if text == "mini@v1":
        return ModelSpec(text, "mini", weights="v1")
    if text == "mini" or text.startswith("mini@"):
        heads = str(Path(text.split("@", 1)[1]).expanduser()) if "@" in text else None
        if heads is not None and not Path(heads).exists():
            raise ModelSpecError(f"model spec {text!r}: heads file {heads} does not exist")
        return ModelSpec(text, "mini", weights=heads)
    if text.startswith("open_clip:"):
        rest = text[len("open_clip:") :]
        if "@" in rest:
            arch, ckpt = rest.split("@", 1)
            if _is_path(ckpt) and not Path(ckpt).expanduser().exists():
                raise ModelSpecError(f"model spec {text!r}: checkpoint {ckpt} does not exist")
            return ModelSpec(text, "open_clip", arch, ckpt)
        if _is_path(rest) or Path(rest).is_dir():
            return ModelSpec(text, "open_clip", "local-dir:" + str(Path(rest).expanduser()))
        arch, _, tag = rest.partition("/")
        return ModelSpec(text, "open_clip", arch, tag or None)
    if text.startswith("hf:"):
        name = text[len("hf:") :]
        if _is_path(name) and not Path(name).expanduser().is_dir():
            raise ModelSpecError(f"model spec {text!r}: directory {name} does not exist")
        return ModelSpec(text, "hf", name)
    raise ModelSpecError(f"unknown model spec {text!r}: {SPEC_HELP}")
