"""The one settings object. Values come from defaults, then a TOML file ($VIEWFINDER_CONFIG, else
$XDG_CONFIG_HOME/viewfinder/config.toml where it exists), then the environment, then explicit
arguments (CLI flags), each overriding the one before."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

DEFAULT_MODEL = "mini"


def default_data_dir() -> Path:
    """XDG data dir, as users of Linux desktop tools expect."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "viewfinder"


def default_config_file() -> Path:
    """Where a settings file is looked for when $VIEWFINDER_CONFIG names none (XDG)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "viewfinder" / "config.toml"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "viewfinder"


@dataclass(frozen=True)
class Config:
    db: Path = field(default_factory=lambda: default_data_dir() / "index")
    model: str | None = None  # None: the model stored in the catalogue, else DEFAULT_MODEL
    device: str = "auto"
    runtime: str = "auto"  # what runs `mini`: auto (ONNX Runtime on a CPU, torch on a GPU) | onnx | torch
    batch_size: int | None = None  # images per model batch; None: 256 on a GPU, 32 on a CPU
    # decode processes; on a GPU too, where 8 or 14 made indexing slower than 4 (docs/benchmarks.md)
    workers: int = max(1, min(4, (os.cpu_count() or 1)))
    max_pixels: int = 89_478_485  # Pillow's own bomb limit; larger images are refused
    gpu_decode: bool = True  # on CUDA, decode JPEGs on the GPU (ingest/gpu_decode.py)
    # GPU JPEG decoders, a thread each (ingest/gpu_jpeg.py); (): nvImageCodec's hardware decoder
    # for folders of large photos where it is installed, else torchvision (gpu_decode.gpu_decoders_for)
    gpu_decoders: tuple[str, ...] = ()
    # of large JPEGs on the GPU path, the share reader processes decode with Pillow beside the GPU
    # decoders; None: from the rates measured on H100/H200 hosts, none beside nvImageCodec
    # (ingest/gpu_decode.auto_cpu_share)
    gpu_pillow_share: float | None = None
    # processes that decode whole batches of large JPEGs with Pillow from the back of the run
    # beside the GPU decoders; None: half the cores where the readers decode none, else none
    # (ingest/gpu_decode.gpu_drafters)
    gpu_draft_processes: int | None = None
    compile: bool = False  # torch.compile the image tower (Encoder.compile_image_tower)
    index_kind: str = "auto"  # auto | flat | hnsw | ivfpq
    exact_limit: int = 100_000  # up to this many vectors "auto" searches exactly (docs/benchmarks.md)
    index_ram_gb: float | None = None  # RAM the vector index may hold; None: half of physical memory
    cache_dir: Path = field(default_factory=default_cache_dir)
    checkpoint_seconds: float = 30.0  # how often the vector index file is rewritten while indexing
    search_mode: str = "vector"  # vector | lexical | fused, for text queries over images
    token: str | None = None  # bearer token for the API's write endpoints
    read_token: str | None = None  # if set, the API's searches and images need it (or `token`)
    show_paths: bool = False  # the API shows remote clients absolute server paths (else file names)
    rate_limit: int = 600  # API requests per minute per client address; 0: no limit
    allowed_roots: tuple[str, ...] = ()  # folders the API may index

    def with_overrides(self, **values: object) -> "Config":
        """Copy with the given non-None values set; unknown names are an error."""
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        clean = {k: v for k, v in values.items() if v is not None}
        if "db" in clean:
            clean["db"] = Path(str(clean["db"])).expanduser()
        if "cache_dir" in clean:
            clean["cache_dir"] = Path(str(clean["cache_dir"])).expanduser()
        if isinstance(clean.get("show_paths"), str):  # from the environment
            clean["show_paths"] = str(clean["show_paths"]).strip().lower() in ("1", "true", "yes", "on")
        if isinstance(clean.get("rate_limit"), str):
            clean["rate_limit"] = int(str(clean["rate_limit"]))
        if "gpu_pillow_share" in clean:
            share = float(str(clean["gpu_pillow_share"]))
            if not 0.0 <= share <= 1.0:
                raise ValueError(
                    f"setting gpu_pillow_share: {share} is not a share; use 0 to 1, or leave it out"
                )
            clean["gpu_pillow_share"] = share
        if "gpu_draft_processes" in clean:
            count = clean["gpu_draft_processes"]
            if not str(count).isdigit():
                raise ValueError(
                    f"setting gpu_draft_processes: {count!r} is not a count of processes; "
                    "use 0 or more, or leave it out"
                )
            clean["gpu_draft_processes"] = int(str(count))
        for name in ("allowed_roots", "gpu_decoders"):  # lists in TOML
            if name in clean:
                clean[name] = tuple(str(r) for r in clean[name])  # type: ignore[union-attr]
        return replace(self, **clean)  # type: ignore[arg-type]


_ENV = {
    "VIEWFINDER_DB": "db",
    "VIEWFINDER_MODEL": "model",
    "VIEWFINDER_DEVICE": "device",
    "VIEWFINDER_RUNTIME": "runtime",
    "VIEWFINDER_TOKEN": "token",
    "VIEWFINDER_READ_TOKEN": "read_token",
    "VIEWFINDER_SHOW_PATHS": "show_paths",
    "VIEWFINDER_RATE_LIMIT": "rate_limit",
    "VIEWFINDER_CACHE": "cache_dir",
}


_VAR_OF = {name: var for var, name in _ENV.items()}


def config_file(toml_path: Path | None = None) -> Path | None:
    """The settings file in effect: the given one, $VIEWFINDER_CONFIG, or the XDG one if it exists."""
    if toml_path is not None:
        return toml_path
    if os.environ.get("VIEWFINDER_CONFIG"):
        return Path(os.environ["VIEWFINDER_CONFIG"])
    xdg = default_config_file()
    return xdg if xdg.is_file() else None


def explain_config(toml_path: Path | None = None, **overrides: object) -> list[tuple[str, object, str]]:
    """(setting, effective value, where it came from) for every setting, as `load_config` would
    resolve them: "default", the settings file, the environment variable, or "argument"."""
    path = config_file(toml_path)
    layers: list[tuple[str, dict]] = []
    if path is not None:
        with open(path, "rb") as fh:
            layers.append((str(path), tomllib.load(fh)))
    layers.append(
        ("environment", {name: os.environ[var] for var, name in _ENV.items() if os.environ.get(var)})
    )
    layers.append(("argument", {k: v for k, v in overrides.items() if v is not None}))
    cfg = Config()
    source = {f.name: "default" for f in fields(Config)}
    for label, values in layers:
        cfg = cfg.with_overrides(**values)
        for name in values:
            source[name] = f"${_VAR_OF[name]}" if label == "environment" else label
    return [(f.name, getattr(cfg, f.name), source[f.name]) for f in fields(Config)]


def load_config(toml_path: Path | None = None, **overrides: object) -> Config:
    """Defaults < TOML file (`config_file`) < environment < overrides."""
    cfg = Config()
    path = config_file(toml_path)
    if path is not None:
        with open(path, "rb") as fh:
            cfg = cfg.with_overrides(**tomllib.load(fh))
    cfg = cfg.with_overrides(**{name: os.environ[var] for var, name in _ENV.items() if os.environ.get(var)})
    return cfg.with_overrides(**overrides)
