"""REST face (FastAPI): translate HTTP to engine calls and results to JSON. No search logic here.

Images are served by catalogue id only; a path in a request never reaches the file system."""

from __future__ import annotations

import ctypes
import hmac
import os
import sys
import time
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal, Sequence

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi import Query as QueryParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .config import Config
from .engine import MAX_WEIGHT, Engine
from .errors import ImageTooLargeError, QueryError, UnsupportedMediaError, ViewfinderError

MAX_K = 200
MAX_EXPLAIN = 10  # heatmaps per search: each costs 10-65 image encodings
TOKEN_COOKIE = "viewfinder_token"
LOOPBACK = {"127.0.0.1", "::1"}
MAX_UPLOAD_BYTES = 20 << 20
WEB_DIR = Path(__file__).parent / "web"


MAX_ID = 2**63 - 1  # SQLite's largest row id


class QueryPartIn(BaseModel):
    text: str | None = None
    image: str | None = Field(None, description="data URI of an image")
    weight: float = Field(1.0, ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)


class SearchRequest(BaseModel):
    query: str | list[QueryPartIn] = Field(
        "", description="query string (weighted parts like '2:red car -blurry'), or a list of parts"
    )
    k: int = Field(10, ge=1, le=MAX_K)
    offset: int = Field(0, ge=0, le=10_000)
    text_weight: float | None = Field(None, ge=0.0, le=1.0)
    image: str | None = Field(None, description="data URI of an image for hybrid search")
    target: Literal["images", "texts"] = "images"
    mode: Literal["vector", "lexical", "fused"] | None = None
    filters: (
        dict[Literal["after", "before", "camera", "folder", "place", "near", "within", "type"], str] | None
    ) = Field(
        None,
        description="e.g. {'after': '2023-06', 'camera': 'canon', 'place': 'France', 'near': '48.85,2.35', "
        "'within': '20km'}; also inline in the query (after:2023-06)",
    )
    explain: bool = Field(
        False, description=f"a heatmap of where the query matches on each image hit (k <= {MAX_EXPLAIN})"
    )

    @model_validator(mode="after")
    def something_to_look_for(self) -> "SearchRequest":
        if isinstance(self.query, list) and self.query and all(p.weight <= 0 for p in self.query):
            raise ValueError("only negative parts: add a part with a positive weight to look for")
        if self.explain and self.k > MAX_EXPLAIN:
            raise ValueError(
                f"explain: at most k={MAX_EXPLAIN} hits (each heatmap costs 10-65 image encodings)"
            )
        return self


class TextsRequest(BaseModel):
    texts: list[str] = Field(..., min_length=1, max_length=100_000)
    source: str = "api"


class IndexRequest(BaseModel):
    folder: str


class ReindexRequest(BaseModel):
    model: str | None = Field(None, description="model spec; default: mini")


class ErrorOut(BaseModel):
    error: str = Field(..., description="one line naming the field or file and what to do")


def _error(what: str) -> dict:
    return {"model": ErrorOut, "description": what}


# Every error the handlers below can send, in the one shape they send it (documented for clients
# and for schemathesis' response checks).
ERRORS = {
    400: _error("a request the engine cannot act on"),
    401: _error("missing or wrong bearer token"),
    403: _error("disabled, or a folder outside the allowed roots"),
    404: _error("no such image"),
    409: _error("busy with another job, or an index of another model"),
    413: _error("an image or request body over the limit"),
    415: _error("a request body that is neither JSON nor multipart"),
    429: _error("too many requests from this client this minute"),
    422: _error("a field that does not validate, or an image that cannot be decoded"),
}


def image_responses(what: str, media: str = "image/*") -> dict:
    return {
        200: {"description": what, "content": {media: {"schema": {"type": "string", "format": "binary"}}}}
    }


def inline_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema with its $defs inlined: a hand-written requestBody's `$ref`s would
    point into a `$defs` that OpenAPI documents do not have."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


router = APIRouter(responses=ERRORS)


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def _one_of(given: str, *tokens: str | None) -> bool:
    """`given` is one of the set `tokens`, compared in constant time, so that response times
    tell nothing about a token."""
    return any(hmac.compare_digest(given.encode(), t.encode()) for t in tokens if t)


def _bearer(request: Request, *tokens: str | None) -> bool:
    """The request carries one of `tokens`, as a bearer header or the page's cookie."""
    scheme, _, header = request.headers.get("authorization", "").partition(" ")
    given = [header if scheme == "Bearer" else "", request.cookies.get(TOKEN_COOKIE, "")]
    return any(_one_of(g, *tokens) for g in given if g)


def require_token(request: Request) -> None:
    token = engine_of(request).config.token
    if not token:
        raise HTTPException(
            403, "write endpoints are disabled: set VIEWFINDER_TOKEN (or token in the config) to enable them"
        )
    if not _bearer(request, token):
        raise HTTPException(401, "missing or wrong bearer token")


def require_read(request: Request) -> None:
    """With a read token set, searches, images and stats need it (or the write token)."""
    cfg = engine_of(request).config
    if cfg.read_token and not _bearer(request, cfg.read_token, cfg.token):
        raise HTTPException(
            401, "this server needs its read token: send 'Authorization: Bearer TOKEN' or open /?token=TOKEN"
        )


async def read_search(request: Request) -> tuple[SearchRequest, bytes | None]:
    """JSON body, or multipart with the same fields plus an optional image `file`."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        data = None
        if upload is not None and hasattr(upload, "read"):
            data = await upload.read(MAX_UPLOAD_BYTES + 1)
            if len(data) > MAX_UPLOAD_BYTES:
                raise ImageTooLargeError(
                    f"file: upload over {MAX_UPLOAD_BYTES >> 20} MB; send a smaller image"
                )
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str) and v != ""}
        try:
            return SearchRequest(**fields), data
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from exc
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind != "application/json":
        raise UnsupportedMediaError(
            f"content-type {kind!r}: send application/json, or multipart/form-data with an image file"
        )
    body = await read_limited(request, MAX_UPLOAD_BYTES)
    try:
        return SearchRequest.model_validate_json(body or b"{}"), None
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes `limit` bytes (whatever Content-Length says)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ImageTooLargeError(
                f"request body over {limit >> 20} MB; send a smaller image, or upload it as multipart"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def run_search(engine: Engine, req: SearchRequest, upload: bytes | None, target: str) -> dict:
    """The request as an engine search (remote: local=False), hits with their image URLs."""
    query = [p.model_dump() for p in req.query] if isinstance(req.query, list) else req.query
    result = engine.search(
        query,
        k=req.k,
        offset=req.offset,
        image=upload if upload is not None else req.image,
        text_weight=req.text_weight,
        target=target,
        local=False,
        mode=req.mode,
        regions=req.explain,
        filters=req.filters,
    )
    out = result.to_dict()
    for hit in out["hits"]:
        if hit["kind"] == "image":
            public_image(hit, engine)
        elif hit["path"] and not engine.config.show_paths:  # the server's folders are its own business
            hit["path"] = Path(hit["path"]).name
    return out


BODY_DOC = {
    "requestBody": {
        "content": {
            "application/json": {"schema": inline_schema(SearchRequest)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string"},
                        "k": {"type": "integer"},
                        "offset": {"type": "integer"},
                        "text_weight": {"type": "number"},
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            },
        }
    }
}


@router.post("/search", openapi_extra=BODY_DOC, dependencies=[Depends(require_read)])
async def search(request: Request) -> JSONResponse:
    """Text, image (multipart `file`), or hybrid (both, with `text_weight`) search over images."""
    req, upload = await read_search(request)
    return JSONResponse(await run_in_threadpool(run_search, engine_of(request), req, upload, req.target))


@router.post("/search/image-to-text", openapi_extra=BODY_DOC, dependencies=[Depends(require_read)])
async def image_to_text(request: Request) -> JSONResponse:
    """The stored texts and captions that best describe an uploaded image."""
    req, upload = await read_search(request)
    if upload is None and not req.image and not (isinstance(req.query, str) and req.query.strip()):
        raise QueryError("file: upload the image to describe")
    return JSONResponse(await run_in_threadpool(run_search, engine_of(request), req, upload, "texts"))


ImageId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="catalogue id of the image")]


@router.get(
    "/images/{image_id}",
    responses=image_responses("the image file, as stored"),
    dependencies=[Depends(require_read)],
)
def image(image_id: ImageId, engine: Engine = Depends(engine_of)) -> FileResponse:
    return FileResponse(engine.image_path(image_id))


@router.get(
    "/thumbnails/{image_id}",
    responses=image_responses("a JPEG thumbnail", "image/jpeg"),
    dependencies=[Depends(require_read)],
)
def thumbnail(image_id: ImageId, engine: Engine = Depends(engine_of)) -> FileResponse:
    return FileResponse(engine.thumbnail(image_id), media_type="image/jpeg")


@router.get(
    "/explain/{image_id}",
    responses=image_responses("the image with a heatmap of where the query matches", "image/png"),
    dependencies=[Depends(require_read)],
)
def explain(
    image_id: ImageId,
    query: Annotated[str, QueryParam(min_length=1, max_length=2000, description="the search query")],
    engine: Engine = Depends(engine_of),
) -> Response:
    """The image with a heatmap of where `query` matches it; the header X-Heatmap-Summary says
    where in words."""
    heat = engine.explain_regions(image_id, query, local=False)
    return Response(
        engine.overlay_png(image_id, heat),
        media_type="image/png",
        headers={"X-Heatmap-Summary": heat.summary()},
    )


@router.get("/stats", dependencies=[Depends(require_read)])
def stats(engine: Engine = Depends(engine_of)) -> dict:
    job = engine.index_job()
    facts = {**engine.stats(), "index_job": job.to_dict() if job else None}
    if not engine.config.show_paths:
        facts["db"] = Path(facts["db"]).name
    return facts


@router.get("/duplicates", dependencies=[Depends(require_read)])
def duplicates(
    level: Literal["exact", "near", "similar"] = "near",
    threshold: Annotated[float | None, QueryParam(ge=-1.0, le=1.0, description="cosine threshold")] = None,
    engine: Engine = Depends(engine_of),
) -> list[dict]:
    """Groups of duplicate images, largest first, each with the score that joined it and the
    threshold used; image URLs beside the paths."""
    groups = [g.to_dict() for g in engine.duplicates(level, threshold)]
    for group in groups:
        group["images"] = [public_image(image, engine) for image in group["images"]]
    return groups


def public_image(image: dict, engine: Engine) -> dict:
    """An image's facts as remote clients see them: the file name, not the server's folders
    (unless the operator shows paths), and the URLs of the image and its thumbnail."""
    if image.get("path") and not engine.config.show_paths:
        image["path"] = Path(image["path"]).name
    image["image_url"] = f"/images/{image['id']}"
    image["thumbnail_url"] = f"/thumbnails/{image['id']}"
    return image


@router.get("/images/{image_id}/info", dependencies=[Depends(require_read)])
def image_info(image_id: ImageId, engine: Engine = Depends(engine_of)) -> dict:
    """What the index holds about one image: file size, pixels, date taken (`taken_source`
    "file": the file's date, the photo had none), camera, lens, GPS and place, caption."""
    return public_image(engine.image_info(image_id), engine)


@router.get("/browse", dependencies=[Depends(require_read)])
def browse(
    offset: Annotated[int, QueryParam(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, QueryParam(ge=1, le=500)] = 50,
    after: Annotated[str | None, QueryParam(max_length=40, description="YYYY, YYYY-MM or YYYY-MM-DD")] = None,
    before: Annotated[str | None, QueryParam(max_length=40)] = None,
    camera: Annotated[str | None, QueryParam(max_length=200)] = None,
    folder: Annotated[str | None, QueryParam(max_length=200)] = None,
    place: Annotated[str | None, QueryParam(max_length=200, description="town, region or country")] = None,
    near: Annotated[str | None, QueryParam(max_length=60, description="LAT,LON in degrees")] = None,
    within: Annotated[str | None, QueryParam(max_length=20, description="20km, 500m, 3mi")] = None,
    type: Annotated[str | None, QueryParam(max_length=20, description="jpg, png, heic, ...")] = None,
    engine: Engine = Depends(engine_of),
) -> dict:
    """The library without a query, newest first, with the same filters as search:
    {"total": how many pass, "images": [...]}."""
    flags = {"after": after, "before": before, "camera": camera, "folder": folder}
    flags |= {"place": place, "near": near, "within": within, "type": type}
    page = engine.browse(flags, offset, limit)
    page["images"] = [public_image(image, engine) for image in page["images"]]
    return page


@router.get("/health")
def health(engine: Engine = Depends(engine_of)) -> dict:
    return {"status": "ok", "images": engine.counts()["images"], "model": engine.model_spec}


@router.post("/texts", dependencies=[Depends(require_token)])
def add_texts(req: TextsRequest, engine: Engine = Depends(engine_of)) -> dict:
    added = engine.add_texts(req.texts, source=req.source)
    return {"added": added, "texts": engine.counts()["texts"]}


@router.post("/index", dependencies=[Depends(require_token)], status_code=202)
def index(req: IndexRequest, engine: Engine = Depends(engine_of)) -> dict:
    """Index a folder under one of the allowed roots, in the background; GET /stats shows progress."""
    return {"accepted": engine.index_in_background(req.folder)}


@router.post("/reindex", dependencies=[Depends(require_token)], status_code=202)
def reindex(req: ReindexRequest, engine: Engine = Depends(engine_of)) -> dict:
    """Re-embed the index with another model in the background; searches keep using the current
    index until the new one is complete. GET /stats shows progress."""
    return {"accepted": engine.reindex_in_background(req.model)}


@router.get("/", response_class=HTMLResponse)
def page(request: Request, token: str | None = None) -> HTMLResponse:
    """The web page. With a read token set, open it once as /?token=TOKEN: a cookie then carries
    the token for the page's searches and images."""
    cfg = engine_of(request).config
    html = HTMLResponse((WEB_DIR / "templates" / "index.html").read_text(encoding="utf-8"))
    if cfg.read_token and token is not None:
        if not _one_of(token, cfg.read_token, cfg.token):
            raise HTTPException(401, "wrong token in /?token=")
        html.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return html
    require_read(request)
    return html


M_ARENA_MAX = -8  # glibc's mallopt parameter number


def cap_malloc_arenas(arenas: int = 2) -> bool:
    """Let glibc's malloc use at most `arenas` arenas in this process; True where it took.

    glibc gives threads that allocate at the same time arenas of their own, up to 8 per core; under
    load, with all 16 arenas made, the server's memory still rose in 7 MiB steps for 30 minutes
    (torch runtime), as if each arena grew in turn and kept it. Two arenas level it off at no cost in
    requests/s (docs/benchmarks.md, "Server memory under a long load"). MALLOC_ARENA_MAX, where
    set, wins; other C libraries have no arenas. Must run before the server's threads start."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas) == 1
    except (OSError, AttributeError):  # not glibc (musl): nothing to cap
        return False


def project_error(_: Request, exc: ViewfinderError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.http_status)


def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    # the deepest error: for `query` (a string or a list of parts) the one about the list's part,
    # not "should be a valid string"; union branch names ("list[QueryPartIn]") left out
    first = max(exc.errors(), key=lambda e: len(e.get("loc", ())), default={})
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body" and "[" not in str(p)) or "request"
    return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)


def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


class RateLimit:
    """At most `per_minute` requests per client address in each minute (a fixed window); the
    rest get 429 with Retry-After. One process's memory: enough for one server. Behind a reverse
    proxy every client looks like the proxy: limit there instead."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.window, self.counts = 0, Counter()

    async def __call__(self, request: Request, call_next):
        now = time.monotonic()
        window = int(now // 60)
        if window != self.window:  # a new minute: forget the last one's counts
            self.window, self.counts = window, Counter()
        client = request.client.host if request.client else "?"
        if client in LOOPBACK:  # this machine's own user (and benchmarks) are not throttled
            return await call_next(request)
        self.counts[client] += 1
        if self.counts[client] > self.per_minute:
            return JSONResponse(
                {"error": f"over {self.per_minute} requests a minute from {client}; wait and retry"},
                status_code=429,
                headers={"Retry-After": str(60 - int(now % 60))},
            )
        return await call_next(request)


def create_app(config: Config, engine: Engine | None = None, watch: Sequence[str] = ()) -> FastAPI:
    """The app over one engine; the model loads at start-up and is shared by all requests."""
    engine = engine or Engine(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        engine.load()  # once, before the first request
        watchers = [engine.watch_in_background(folder) for folder in watch]
        yield
        for stop in watchers:
            stop.set()
        engine.close()

    # /docs and /redoc with their scripts served from the package, not a CDN: they work offline
    app = FastAPIOffline(
        title="viewfinder",
        version="0.1.0",
        lifespan=lifespan,
        description="Multimodal semantic search over an image collection.",
    )
    app.state.engine = engine
    if engine.config.rate_limit:
        app.middleware("http")(RateLimit(engine.config.rate_limit))
    app.add_exception_handler(ViewfinderError, project_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    return app


def serve(config: Config, host: str = "127.0.0.1", port: int = 8000, watch: Sequence[str] = ()) -> None:
    """Run the server; `watch`: folders kept indexed while it runs (Engine.watch_in_background)."""
    import uvicorn

    cap_malloc_arenas()

    uvicorn.run(create_app(config, watch=watch), host=host, port=port, log_level="info")
