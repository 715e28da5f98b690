"""REST face (FastAPI): translate HTTP to engine calls and results to JSON. No search logic here.

Images are served by catalogue id only; a path in a request never reaches the file system."""

from __future__ import annotations

import io
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .config import Config
from .errors import BadImageError, ImageTooLargeError, NotFoundError, QueryError, ViewfinderError

MAX_K = 200
MAX_UPLOAD_BYTES = 20 << 20
THUMB_SIZE = 320
WEB_DIR = Path(__file__).parent / "web"


class QueryPartIn(BaseModel):
    text: str | None = None
    image: str | None = Field(None, description="data URI of an image")
    weight: float = 1.0


class SearchRequest(BaseModel):
    query: str | list[QueryPartIn] = Field("", description="query string (weighted parts like '2:red car -blurry'), or a list of parts")
    k: int = Field(10, ge=1, le=MAX_K)
    offset: int = Field(0, ge=0, le=10_000)
    text_weight: float | None = Field(None, ge=0.0, le=1.0)
    image: str | None = Field(None, description="data URI of an image for hybrid search")
    target: Literal["images", "texts"] = "images"
    mode: Literal["vector", "lexical", "fused"] | None = None


class TextsRequest(BaseModel):
    texts: list[str] = Field(..., min_length=1, max_length=100_000)
    source: str = "api"


class IndexRequest(BaseModel):
    folder: str


def create_app(config: Config, engine=None) -> FastAPI:
    """The app over one engine; the model loads at start-up and is shared by all requests."""
    from .engine import Engine

    engine = engine or Engine(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        engine.encoder  # noqa: B018  (load the model once, before the first request)
        yield
        engine.close()

    app = FastAPI(title="viewfinder", version="0.1.0", description="Multimodal semantic search over an image collection.",
                  lifespan=lifespan)
    app.state.engine = engine
    jobs: dict[str, Any] = {"index": None}
    jobs_lock = threading.Lock()

    @app.exception_handler(ViewfinderError)
    def _project_error(_: Request, exc: ViewfinderError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    def require_token(request: Request) -> None:
        if not config.token:
            raise HTTPException(403, "write endpoints are disabled: set VIEWFINDER_TOKEN (or token in the config) to enable them")
        if request.headers.get("authorization", "") != f"Bearer {config.token}":
            raise HTTPException(401, "missing or wrong bearer token")

    @app.exception_handler(StarletteHTTPException)
    def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    async def read_search(request: Request) -> tuple[SearchRequest, bytes | None]:
        """JSON body, or multipart with the same fields plus an optional image `file`."""
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            data = None
            if upload is not None and hasattr(upload, "read"):
                data = await upload.read(MAX_UPLOAD_BYTES + 1)
                if len(data) > MAX_UPLOAD_BYTES:
                    raise ImageTooLargeError(f"file: upload over {MAX_UPLOAD_BYTES >> 20} MB; send a smaller image")
            fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str) and v != ""}
            try:
                return SearchRequest(**fields), data
            except ValidationError as exc:
                raise RequestValidationError(exc.errors()) from exc
        body = await request.body()
        if len(body) > MAX_UPLOAD_BYTES * 2:
            raise ImageTooLargeError("request body too large; send a smaller image")
        try:
            return SearchRequest.model_validate_json(body or b"{}"), None
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from exc

    def run(req: SearchRequest, upload: bytes | None, target: str) -> dict:
        if isinstance(req.query, list):
            from .query.parse import QueryPart

            parts: list = []
            for i, p in enumerate(req.query):
                if bool(p.text) == bool(p.image):
                    raise QueryError(f"query[{i}]: give exactly one of 'text' or 'image'")
                if p.image and not p.image.startswith("data:image/"):
                    raise QueryError(f"query[{i}].image: must be a data URI (data:image/...;base64,...)")
                parts.append(QueryPart("text", p.text, p.weight, p.text[:80]) if p.text else QueryPart("image", p.image, p.weight, f"image {i + 1}"))
            if upload is not None:
                parts.append(QueryPart("image", upload, 1.0, "uploaded image"))
            query: Any = parts
            image = None
        else:
            query = [s for s in [req.query] if s.strip()]
            image = upload if upload is not None else req.image
            if isinstance(image, str) and not image.startswith("data:image/"):
                raise QueryError("image: must be a data URI (data:image/...;base64,...) or an uploaded file")
            if image is None and not query:
                raise QueryError("query: give a text query, an image, or both")
            if target == "texts" and image is not None and not query:
                query, image = [image], None
        result = engine.search(query, k=req.k, offset=req.offset, image=image,
                               text_weight=req.text_weight if image is not None else None, target=target, local=False, mode=req.mode)
        out = result.to_dict()
        for hit in out["hits"]:
            if hit["kind"] == "image":
                hit["image_url"] = f"/images/{hit['id']}"
                hit["thumbnail_url"] = f"/thumbnails/{hit['id']}"
                hit["alt"] = alt_text(hit)
        return out

    body_doc = {"requestBody": {"content": {
        "application/json": {"schema": SearchRequest.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "query": {"type": "string"}, "k": {"type": "integer"}, "offset": {"type": "integer"},
            "text_weight": {"type": "number"}, "file": {"type": "string", "format": "binary"}}}},
    }}}

    @app.post("/search", openapi_extra=body_doc)
    async def search(request: Request) -> JSONResponse:
        """Text, image (multipart `file`), or hybrid (both, with `text_weight`) search over images."""
        req, upload = await read_search(request)
        return JSONResponse(await _in_thread(run, req, upload, req.target))

    @app.post("/search/image-to-text", openapi_extra=body_doc)
    async def image_to_text(request: Request) -> JSONResponse:
        """The stored texts and captions that best describe an uploaded image."""
        req, upload = await read_search(request)
        if upload is None and not req.image and not (isinstance(req.query, str) and req.query.strip()):
            raise QueryError("file: upload the image to describe")
        return JSONResponse(await _in_thread(run, req, upload, "texts"))

    @app.get("/images/{image_id}")
    def image(image_id: int) -> FileResponse:
        rec = engine.store.catalog.get_image(image_id)
        if not Path(rec.path).is_file():
            raise NotFoundError(f"image {image_id}: its file {Path(rec.path).name} is gone; re-index the folder")
        return FileResponse(rec.path)

    @app.get("/thumbnails/{image_id}")
    def thumbnail(image_id: int) -> Response:
        rec = engine.store.catalog.get_image(image_id)
        cache = Path(config.db) / "thumbnails" / f"{image_id}-{(rec.sha256 or 'x')[:16]}.jpg"
        if not cache.exists():
            from .ingest.decode import read_image

            try:
                im = read_image(Path(rec.path), config.max_pixels, draft_size=THUMB_SIZE).image
            except BadImageError as exc:
                raise NotFoundError(f"image {image_id}: {exc}") from exc
            im.thumbnail((THUMB_SIZE, THUMB_SIZE))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_bytes(buf.getvalue())
            tmp.replace(cache)
        return FileResponse(cache, media_type="image/jpeg")

    @app.get("/stats")
    def stats() -> dict:
        out = engine.stats()
        with jobs_lock:
            out["index_job"] = jobs["index"]
        return out

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "images": engine.store.catalog.count_images(), "model": engine.model_spec}

    @app.post("/texts", dependencies=[Depends(require_token)])
    def add_texts(req: TextsRequest) -> dict:
        added = engine.add_texts(req.texts, source=req.source)
        return {"added": added, "texts": engine.store.catalog.count_texts()}

    @app.post("/index", dependencies=[Depends(require_token)], status_code=202)
    def index(req: IndexRequest) -> dict:
        """Index a folder under one of the allowed roots, in the background; GET /stats shows progress."""
        folder = Path(req.folder).expanduser().resolve()
        roots = [Path(r).expanduser().resolve() for r in config.allowed_roots]
        if not any(folder == r or r in folder.parents for r in roots):
            raise HTTPException(403, f"folder: {req.folder} is not under an allowed root; add it to allowed_roots in the config")
        with jobs_lock:
            if jobs["index"] and jobs["index"]["state"] == "running":
                raise HTTPException(409, "an index run is already going; wait for it (GET /stats)")
            jobs["index"] = {"folder": str(folder), "state": "running"}

        def work() -> None:
            # Its own engine (own catalogue connections and vector index); searches keep using theirs
            # and pick up each committed batch through the catalogue version.
            try:
                with Engine(config, encoder=engine.encoder) as job_engine:
                    rep = job_engine.index(folder, progress=False)
                state = {"state": "done", "embedded": rep.embedded, "failed": len(rep.failed)}
            except ViewfinderError as exc:
                state = {"state": "failed", "error": str(exc)}
            with jobs_lock:
                jobs["index"] = {"folder": str(folder), **state}

        threading.Thread(target=work, daemon=True).start()
        return {"accepted": str(folder)}

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse((WEB_DIR / "templates" / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    return app


def alt_text(hit: dict) -> str:
    """Caption when there is one, else the file name and the best matching stored text."""
    if hit.get("caption"):
        return hit["caption"]
    name = Path(hit.get("path") or "").name or f"image {hit['id']}"
    return f"{name}: {hit['best_text']}" if hit.get("best_text") else name


async def _in_thread(fn, *args):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def serve(config: Config, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level="info")


