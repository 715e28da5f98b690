"""Command line face: parse arguments, call the engine, print results. No logic of its own."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import List, Optional

import typer

from .config import explain_config, load_config
from .engine import MODEL_SPEC_HELP, Engine
from .errors import ViewfinderError, shown_path


class _BareHelp:
    """Typer (0.29) lists its own --help flag as taking a `<bool>`; it takes nothing."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class _Command(_BareHelp, typer.core.TyperCommand):
    pass


class _Group(_BareHelp, typer.core.TyperGroup):
    pass


class _App(typer.Typer):
    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _App(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Search your images by what they show.",
)
texts_app = _App(cls=_Group, no_args_is_help=True, help="Sentences or labels for image -> text search.")
app.add_typer(texts_app, name="texts")

_state = {"debug": False}
DbOpt = typer.Option(None, "--db", help="Index folder (default: $VIEWFINDER_DB or the XDG data dir).")
ModelOpt = typer.Option(None, "--model", help=f"Model spec: {MODEL_SPEC_HELP}.")


def _engine(
    db: Optional[Path], model: Optional[str] = None, create: bool = True, **settings: object
) -> Engine:
    return Engine(load_config(db=db, model=model, **settings), create=create)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"viewfinder {version('viewfinder')}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks.", metavar=""),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit.", metavar=""
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More log lines (-vv: debugging ones).", metavar=""
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Only errors and results: no warnings, no progress bars.", metavar=""
    ),
) -> None:
    _state["debug"], _state["quiet"] = debug, quiet
    level = (
        logging.ERROR
        if quiet
        else logging.DEBUG
        if verbose > 1
        else logging.INFO
        if verbose or debug
        else logging.WARNING
    )
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    for noisy in ("httpx", "transformers", "huggingface_hub", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@app.command()
def index(
    folder: Path = typer.Argument(..., help="Folder of images (searched recursively)."),
    db: Optional[Path] = DbOpt,
    model: Optional[str] = ModelOpt,
    workers: Optional[int] = typer.Option(None, help="Decode worker processes."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per model batch."),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", help="Refuse images with more pixels than this."
    ),
    index_kind: Optional[str] = typer.Option(None, "--index-kind", help="auto, flat, hnsw or ivfpq."),
    compile_model: bool = typer.Option(
        False,
        "--compile",
        help="torch.compile the image tower (pays off on a GPU, for large runs).",
        metavar="",
    ),
    ray: Optional[str] = typer.Option(
        None, "--ray", help="Distribute decode + embed on Ray: 'local' or a cluster address."
    ),
    actors: Optional[int] = typer.Option(
        None, "--actors", help="With --ray: embedding actors (default: one per GPU, else 2 on CPUs)."
    ),
    gpus_per_actor: Optional[float] = typer.Option(
        None, "--gpus-per-actor", help="With --ray: GPUs per actor (default 1 where there are GPUs; 0: CPU)."
    ),
    caption: bool = typer.Option(
        False, "--caption", help="Caption new images after embedding them.", metavar=""
    ),
    ocr: bool = typer.Option(False, "--ocr", help="Read the text inside new images (Tesseract).", metavar=""),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.", metavar=""),
) -> None:
    """Index (or bring up to date) the images under FOLDER."""
    with _engine(
        db,
        model,
        workers=workers,
        batch_size=batch_size,
        max_pixels=max_pixels,
        index_kind=index_kind,
        compile=compile_model or None,
    ) as engine:
        try:
            if ray:
                report = engine.index_distributed(
                    folder,
                    None if ray == "local" else ray,
                    actors=actors,
                    gpus_per_actor=gpus_per_actor,
                    on_error=_skipped,
                )
            else:
                report = engine.index(folder, progress=_progress(quiet), on_error=_skipped)
        except KeyboardInterrupt:
            typer.echo(
                f"\ninterrupted: index {engine.config.db} holds {engine.counts()['images']} images; "
                "run the same command to go on from there",
                err=True,
            )
            raise typer.Exit(130) from None
        typer.echo(
            f"{report.summary()}; index {engine.config.db} now holds {engine.counts()['images']} images"
        )
        if caption or ocr:
            _echo_caption_report(
                engine.caption(ocr=ocr, captions=caption, progress=_progress(quiet), on_error=_skipped)
            )


@app.command()
def watch(
    folder: Path = typer.Argument(..., help="Folder of images to keep indexed."),
    db: Optional[Path] = DbOpt,
    model: Optional[str] = ModelOpt,
) -> None:
    """Index FOLDER, then keep the index in step with it: new, changed, moved and deleted files
    are picked up within seconds, until Ctrl-C."""
    with _engine(db, model) as engine:
        typer.echo(f"watching {folder} (Ctrl-C stops; what is indexed stays)", err=True)

        def report(rep) -> None:
            now = time.strftime("%H:%M:%S")
            typer.echo(
                f"{now} {rep.summary()}; index {engine.config.db} holds {engine.counts()['images']} images"
            )

        try:
            engine.watch(folder, on_report=report, on_error=_skipped)
        except KeyboardInterrupt:
            typer.echo(
                f"stopped; index {engine.config.db} holds {engine.counts()['images']} images", err=True
            )


def _progress(quiet: bool) -> bool:
    """Progress bars unless the command's or the global -q says not to."""
    return not (quiet or _state.get("quiet"))


def _skipped(msg: str) -> None:
    typer.echo(f"skipped {msg}", err=True)


def _echo_caption_report(rep) -> None:
    typer.echo(
        f"{rep.captioned} captioned, {rep.ocr_read} read for text ({rep.ocr_with_text} with text), "
        f"{len(rep.failed)} failed in {rep.seconds:.1f} s"
    )


@app.command()
def reindex(
    db: Optional[Path] = DbOpt,
    model: Optional[str] = typer.Option(
        None, "--model", help=f"The new model (default: mini). {MODEL_SPEC_HELP}."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.", metavar=""),
) -> None:
    """Re-embed the whole index with another model. The new index is built beside the old one,
    which keeps answering searches; a rerun resumes; when done they switch (the old one is kept
    as DB.previous)."""
    with _engine(db, create=False) as engine:
        before = engine.model_spec
        report = engine.reindex(model, progress=_progress(quiet), on_error=_skipped)
        typer.echo(
            f"{report.embedded} images re-embedded, {len(report.failed)} failed "
            f"({report.images_per_second:.1f} images/s); index {engine.config.db} "
            f"now uses {engine.model_spec} (was {before}; kept as {engine.config.db}.previous)"
        )


@app.command()
def caption(
    db: Optional[Path] = DbOpt,
    captioner: str = typer.Option(
        "vocab", "--captioner", help="vocab (offline, zero-shot), hf:microsoft/git-base-coco or hf:DIR."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Caption images that already have one again.", metavar=""
    ),
    ocr: bool = typer.Option(
        False, "--ocr", help="Also read the text inside the images (Tesseract).", metavar=""
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar=""),
) -> None:
    """Caption every uncaptioned image in the index (resumable)."""
    with _engine(db, create=False) as engine:
        _echo_caption_report(
            engine.caption(
                captioner, overwrite=overwrite, ocr=ocr, progress=_progress(quiet), on_error=_skipped
            )
        )


@app.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True})
def search(
    query: Optional[List[str]] = typer.Argument(
        None, help="Text, an image path or URL; parts may be weighted (2:cat) or negative (-blurry)."
    ),
    db: Optional[Path] = DbOpt,
    model: Optional[str] = typer.Option(None, "--model", help="Must match the index's model when given."),
    k: int = typer.Option(10, "-k", "--top", help="How many results."),
    offset: int = typer.Option(0, "--offset", help="Skip this many results (paging)."),
    image: Optional[str] = typer.Option(
        None, "--image", help="Image to combine with the text (hybrid search)."
    ),
    text_weight: Optional[float] = typer.Option(
        None, "--text-weight", help="Share of the text in a hybrid query, 0..1."
    ),
    texts: bool = typer.Option(
        False, "--texts", help="Rank stored texts instead of images (image -> text).", metavar=""
    ),
    mode: Optional[str] = typer.Option(None, "--mode", help="vector, lexical (captions/OCR/paths) or fused."),
    as_json: bool = typer.Option(False, "--json", help="Print hits as JSON.", metavar=""),
    paths: bool = typer.Option(
        False, "--paths", "-f", help="Print only the paths, one a line (for pipes).", metavar=""
    ),
    as_text: bool = typer.Option(
        False, "--as-text", help="Take the query as words, even where it looks like a file name.", metavar=""
    ),
    after: Optional[str] = typer.Option(
        None, "--after", help="Taken on or after: YYYY, YYYY-MM or YYYY-MM-DD."
    ),
    before: Optional[str] = typer.Option(None, "--before", help="Taken before this date."),
    camera: Optional[str] = typer.Option(None, "--camera", help="Camera make or model contains this."),
    folder: Optional[str] = typer.Option(None, "--folder", help="A folder of this name is above the file."),
    place: Optional[str] = typer.Option(
        None, "--place", help="Taken in this town, region or country ('Paris', 'Paris, France', 'FR')."
    ),
    near: Optional[str] = typer.Option(None, "--near", help="Taken near LAT,LON (degrees), e.g. 48.85,2.35."),
    within: Optional[str] = typer.Option(
        None, "--within", help="Distance from --near: 20km, 500m, 3mi (10km)."
    ),
    file_type: Optional[str] = typer.Option(None, "--type", help="File type: jpg, png, heic, ..."),
    explain: Optional[Path] = typer.Option(
        None,
        "--explain",
        help="Write each image hit with a heatmap of where the query matches into this folder "
        "(PNG; seconds a hit on a CPU).",
    ),
) -> None:
    """Find images (or, with --texts, stored texts) for QUERY."""
    # the query takes words like -blurry (negative parts), so the parser lets unknown options
    # through: a --word is a mistyped option, not a query
    typo = next((q for q in query or [] if q.startswith("--") and len(q) > 2), None)
    if typo is not None:
        raise ViewfinderError(
            f"{typo}: no such option (see viewfinder search --help); a negative query part is -word"
        )
    if text_weight is not None and image is None:
        raise ViewfinderError(
            "--text-weight needs --image: it splits the query between the text and that image"
        )
    with _engine(db, model, create=False) as engine:
        result = engine.search(
            [{"text": q} for q in query or []] if as_text else query or [],
            k=k,
            image=image,
            text_weight=text_weight,
            offset=offset,
            target="texts" if texts else "images",
            mode=mode,
            regions=explain is not None and not texts,
            filters={
                "after": after,
                "before": before,
                "camera": camera,
                "folder": folder,
                "place": place,
                "near": near,
                "within": within,
                "type": file_type,
            },
        )
        if explain is not None:
            explain.mkdir(parents=True, exist_ok=True)
            for h in result.hits:
                if h.heatmap is not None:
                    out = explain / f"{h.rank:02d}-{Path(h.path or '').stem}.png"
                    out.write_bytes(engine.overlay_png(h.id, h.heatmap))
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in result.hits], indent=2))
        return
    if paths:
        for h in result.hits:
            typer.echo(h.text if h.kind == "text" else shown_path(h.path))
        return
    _print_hits(result)


def _elide(path: str, width: int) -> str:
    """`path` in at most `width` characters: the start, an ellipsis, and the whole file name."""
    if len(path) <= width:
        return path
    head, name = path.rsplit("/", 1) if "/" in path else ("", path)
    keep = max(0, width - len(name) - 2)
    return f"{head[:keep]}…/{name}" if keep else f"…/{name}"


def _print_hits(result) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not result.hits:
        console.print(result.message or "no results")
        return
    # box drawing only on a terminal; a long path loses its middle, never its file name
    table = Table(show_header=True, header_style="bold", box=box.SQUARE if console.is_terminal else None)
    heat = any(h.heatmap for h in result.hits)
    for col in ("rank", "score", "confidence", "text" if result.hits[0].kind == "text" else "path"):
        table.add_column(
            col, justify="right" if col not in ("path", "text") else "left", no_wrap=col == "path"
        )
    if heat:
        table.add_column("strongest")
    alike = any(h.likeness for h in result.hits)
    if alike:
        table.add_column("likeness", no_wrap=True)
    room = max(20, console.width - 30 - (20 if heat else 0) - (16 if alike else 0))
    for h in result.hits:
        where = h.text if h.kind == "text" else _elide(shown_path(h.path), room)
        where += f"  [{h.caption}]" if h.kind == "image" and h.caption else ""
        cells = [str(h.rank), f"{h.score:.3f}", f"{h.confidence:.2f}", where]
        cells += [h.heatmap["summary"].replace("strongest ", "")] if heat else []
        table.add_row(*cells + ([h.likeness or ""] if alike else []))
    console.print(table)
    if result.abstained:
        console.print(f"[yellow]{result.message}[/yellow]")


@texts_app.command("add")
def texts_add(
    file: Path = typer.Argument(..., help="A text file: one sentence or label per line."),
    db: Optional[Path] = DbOpt,
    source: Optional[str] = typer.Option(None, help="Where the texts come from (default: the file name)."),
) -> None:
    """Store the lines of FILE for image -> text search."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ViewfinderError(
            f"{file}: cannot read it as UTF-8 text ({exc}); give a plain text file"
        ) from exc
    with _engine(db) as engine:
        added = engine.add_texts(lines, source=source or file.name)
        typer.echo(f"{added} new texts stored; the index holds {engine.counts()['texts']} texts")


@app.command()
def stats(db: Optional[Path] = DbOpt, as_json: bool = typer.Option(False, "--json", metavar="")) -> None:
    """What the index holds."""
    with _engine(db, create=False) as engine:
        facts = engine.stats()
        failures = engine.failures(limit=20)
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    for key, value in facts.items():
        typer.echo(f"{key:>10}: {value}")
    for _path, error in failures:  # the reason names the file
        typer.echo(f"    failed: {error}")


@app.command()
def show(
    image: str = typer.Argument(..., help="Catalogue id (search --json gives it) or the image's path."),
    db: Optional[Path] = DbOpt,
    as_json: bool = typer.Option(False, "--json", metavar=""),
) -> None:
    """Everything the index holds about one image: file, size, caption, text read in it."""
    with _engine(db, create=False) as engine:
        info = engine.image_info(int(image) if image.isdigit() else image)
    info["path"] = shown_path(info["path"])
    if as_json:
        typer.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    offset = info.get("taken_offset")
    for key, value in info.items():
        if key == "taken_at" and offset is not None:  # as the camera's clock showed it
            zone = timezone(timedelta(minutes=offset))
            value = datetime.fromtimestamp(value, zone).isoformat(sep=" ", timespec="seconds")
        elif key in ("mtime", "indexed_at", "taken_at"):  # seconds since 1970 in the JSON, a date here
            value = datetime.fromtimestamp(value).isoformat(sep=" ", timespec="seconds")
        typer.echo(f"{key:>14}: {value}")


@app.command()
def duplicates(
    level: str = typer.Option(
        "near", "--level", help="exact (same bytes), near (same picture) or similar (same scene)."
    ),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="Cosine threshold (default: the level's)."
    ),
    db: Optional[Path] = DbOpt,
    as_json: bool = typer.Option(False, "--json", metavar=""),
) -> None:
    """Groups of duplicate images in the index, largest first."""
    with _engine(db, create=False) as engine:
        groups = engine.duplicates(level, threshold)
    if as_json:
        typer.echo(json.dumps([g.to_dict() for g in groups], indent=2, ensure_ascii=False))
        return
    if not groups:
        typer.echo(f"no {level} duplicates" + (f" at cosine >= {threshold}" if threshold is not None else ""))
    for n, group in enumerate(groups, 1):
        link = (
            "same bytes"
            if group.threshold is None
            else f"linked at cosine >= {group.threshold} (weakest {group.score:.3f})"
        )
        typer.echo(f"group {n}: {len(group.ids)} images, {link}")
        for image_id, path in zip(group.ids, group.paths):
            typer.echo(f"  {image_id:>8}  {shown_path(path)}")


@app.command("config")
def show_config(
    db: Optional[Path] = DbOpt,
    model: Optional[str] = typer.Option(None, "--model", help="As other commands take it."),
    as_json: bool = typer.Option(False, "--json", metavar=""),
) -> None:
    """The settings in effect and where each one comes from: default, the settings file
    ($VIEWFINDER_CONFIG or ~/.config/viewfinder/config.toml), an environment variable, or a flag."""
    rows = explain_config(db=db, model=model)
    if as_json:
        typer.echo(json.dumps({name: {"value": str(v), "from": src} for name, v, src in rows}, indent=2))
        return
    for name, value, source in rows:
        shown = "(hidden)" if "token" in name and value else value
        typer.echo(f"{name:>18} = {shown!s:<40} {source}")


@app.command("eval")
def evaluate(
    dataset: str = typer.Argument(
        ..., help="tuxpaint, openclipart, emoji, fashion-mnist or openclipart-held-out."
    ),
    model: str = typer.Option("mini", "--model", help=f"Model spec to evaluate: {MODEL_SPEC_HELP}."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    report: Optional[Path] = typer.Option(
        None, "--report", help="Write metrics.json and plots to this folder."
    ),
    feature_cache: Optional[Path] = typer.Option(
        None, "--feature-cache", help="npz of cached frozen-tower features (mini)."
    ),
    as_json: bool = typer.Option(False, "--json", metavar=""),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.", metavar=""),
) -> None:
    """Retrieval metrics (both directions) of MODEL on a dataset split."""
    result = Engine.evaluate(dataset, model, split, report, feature_cache, progress=_progress(quiet))
    if as_json:
        typer.echo(json.dumps(result.metrics, indent=2))
        return
    typer.echo(f"{dataset} / {split} / {model}: {result.metrics['pairs']} pairs")
    for direction in ("text_to_image", "image_to_text"):
        m = result.metrics[direction]
        typer.echo(f"  {direction:>14}: " + "  ".join(f"{k} {v:.3f}" for k, v in m.items() if k != "queries"))
    for key in ("zero_shot_accuracy", "cross_modal_consistency@10"):
        if key in result.metrics:
            typer.echo(f"  {key}: {result.metrics[key]:.3f}")
    if report:
        typer.echo(f"  report: {report}")


@app.command()
def train(
    data: str = typer.Argument(
        ..., help="A dataset name, a folder of images with .txt captions, or a CSV (path,caption)."
    ),
    model: str = typer.Option("mini", "--model", help="Model spec to start from."),
    out: Path = typer.Option(..., "--out", help="Folder for the checkpoint and the trained weights."),
    epochs: int = typer.Option(40, "--epochs"),
    batch_size: int = typer.Option(256, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar=""),
) -> None:
    """Contrastive fine-tuning on your image-caption pairs (train split; val split for early stopping)."""
    result = Engine.train(
        data, out, model, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=_progress(quiet)
    )
    typer.echo(
        f"best validation R@5 {result.best_val_recall:.3f} at epoch {result.best_epoch} "
        f"({result.seconds:.0f} s); "
        f"use it with --model '{result.spec}'"
    )


@app.command()
def serve(
    db: Optional[Path] = DbOpt,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    allow_root: Optional[List[Path]] = typer.Option(
        None, "--allow-root", help="Folder that POST /index may index (repeatable)."
    ),
    watch_folders: Optional[List[Path]] = typer.Option(
        None, "--watch", help="Keep this folder indexed while serving (repeatable)."
    ),
) -> None:
    """Serve the REST API and the web page."""
    from .api import serve as run_server

    run_server(
        load_config(db=db, allowed_roots=tuple(str(p) for p in allow_root) if allow_root else None),
        host,
        port,
        watch=[str(p) for p in watch_folders or []],
    )


def main() -> None:
    try:
        app()
    except ViewfinderError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: what was indexed so far is kept; run the same command to resume", err=True)
        sys.exit(130)
    except Exception as exc:  # anything unexpected: one line unless --debug
        if _state["debug"]:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
