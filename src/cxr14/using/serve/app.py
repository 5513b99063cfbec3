"""The web app: a page, a JSON API and its docs, all served from this package (no CDN, works offline).

Routes:
  GET  /              the page (static/index.html, app.js, style.css: hand-written, no framework)
  POST /api/predict   one film (multipart field `file`) -> the row `cxr14 predict --json` prints for it;
                      ?cam=FINDING adds "heatmap", ?film=1 adds "film" (both PNG data URLs)
  GET  /api/model     the model card: model, image size, thresholds, test mean AUROC when metrics.json is there
  GET  /api/health    liveness and the pool's load
  GET  /docs          Swagger UI from the fastapi-offline package's local copy (never a CDN)

Every refusal is {"detail": "one line"} with a 4xx (see refusals.py) or 503 when busy; anything unexpected is
logged with its traceback on the server and answered 500 with one line (OneLineErrors), so the page never
shows a traceback and the server keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from cxr14 import __version__
from cxr14.config import ServeConfig
from cxr14.model.loading import LoadedModel
from cxr14.using.predict import format_json
from cxr14.using.serve.pool import InferencePool, ModelGate
from cxr14.using.serve.refusals import Refused
from cxr14.using.serve.scoring import Ask, answer, check_finding
from cxr14.using.serve.uploads import check_headers, read_upload

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
NOTICE = "Research tool, not a diagnostic device: not for clinical decisions."
#: The page loads nothing from anywhere else; the browser enforces it.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class Row(BaseModel):
    """What `cxr14 predict --json` prints for one film, plus the extras asked for."""

    file: str = Field(description="the uploaded file's name (its last part)")
    probabilities: dict[str, float] = Field(description="the calibrated probabilities, by finding (the model's own "
                                            "label set)")
    findings: list[str] = Field(description="the findings at or above their validation threshold (none for an "
                                "unusual film: its probabilities are given, not called)")
    ood_score: float | None = Field(description="the out-of-distribution gate's score: the film's distance from the "
                                    "training films over about the 99th percentile of films like them (above 1: "
                                    "unlike them); null for a model without a gate")
    unusual: bool = Field(description="true when the film is unlike the training films, or plainly not a chest film")
    reason: str | None = Field(description="why it is unusual, in words; null when it is not")
    heatmap: str | None = Field(None, description="with ?cam=FINDING: PNG data URL, alpha = heat, model input size")
    film: str | None = Field(None, description="with ?film=1: the decoded film as a PNG data URL")


class Problem(BaseModel):
    detail: str = Field(description="why, in one line")


REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "empty file, no `file` field, bad multipart body, unknown finding"},
    413: {"model": Problem, "description": "over --max_upload_mb, or a decompression bomb"},
    415: {"model": Problem, "description": "not a PNG, JPEG or DICOM (or a DICOM compression not supported)"},
    422: {"model": Problem, "description": "DICOM without pixel data, truncated or damaged image, bad query"},
    503: {"model": Problem, "description": "busy: every worker and queue place taken (see Retry-After)"},
}
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary", "description": "PNG, JPEG or DICOM"}},
            }
        }
    },
}


def create_app(model: LoadedModel, settings: ServeConfig) -> FastAPI:
    """The app for one loaded model; `settings` gives the upload cap and the pool's workers and queue."""
    pool = InferencePool(settings.workers, settings.queue)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()

    app = _new_app(lifespan)
    app.state.pool = pool
    app.add_middleware(OneLineErrors)
    _add_error_handlers(app)
    _add_page(app)
    _add_api(app, model, pool, int(settings.max_upload_mb * 2**20))
    return app


def _new_app(lifespan: Any) -> FastAPI:
    """FastAPI with Swagger UI served from fastapi-offline's files, or with /docs saying how to get them."""
    kwargs: dict[str, Any] = {
        "title": "cxr14",
        "version": __version__,
        "description": f"Chest X-ray findings from a trained cxr14 model. {NOTICE}",
        "lifespan": lifespan,
        "swagger_ui_parameters": {"validatorUrl": None},  # no badge fetched from swagger.io
    }
    try:
        from fastapi_offline import FastAPIOffline
    except ModuleNotFoundError:
        app = FastAPI(docs_url=None, redoc_url=None, **kwargs)
        app.add_api_route("/docs", _docs_missing, include_in_schema=False, response_class=HTMLResponse)
        return app
    return FastAPIOffline(redoc_url=None, **kwargs)


async def _docs_missing() -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><title>cxr14 API docs</title><p>The docs page needs the fastapi-offline package, which "
        "serves Swagger UI from this machine instead of a CDN: <code>pip install 'cxr14[serve]'</code>. The "
        "OpenAPI schema is at <a href='/openapi.json'>/openapi.json</a>.",
        status_code=404,
    )


def _add_page(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


def _add_api(app: FastAPI, model: LoadedModel, pool: InferencePool, limit: int) -> None:
    gate = ModelGate()
    card = public_card(model)

    @app.get("/api/health", summary="Liveness and load")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "workers": pool.workers, "queue": pool.queue, "in_progress": pool.admitted}

    @app.get("/api/model", summary="The model card")
    async def model_card() -> dict[str, Any]:
        return card

    documented = {"responses": {200: {"model": Row}, **REFUSALS}, "openapi_extra": {"requestBody": UPLOAD_BODY}}
    findings = ", ".join(model.labels)

    @app.post("/api/predict", summary="Score one film", response_model=None, **documented)
    async def predict(
        request: Request,
        cam: str | None = Query(None, description=f"add the heatmap of one finding: {findings}"),
        film: Annotated[bool, Query(description="add the decoded film as a PNG (for DICOM)")] = False,
    ) -> Response:
        """The probabilities and the findings at or above threshold: the line `cxr14 predict --json` prints."""
        ask = Ask(check_finding(cam, model.labels), film)
        check_headers(request, limit)
        with pool.admit() as slot:
            upload = await read_upload(request, limit)
            row = await slot.run(answer, model, gate, upload.data, upload.name, ask)
        return Response(format_json([row]), media_type="application/json")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse({"detail": exc.reason}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
        return JSONResponse({"detail": f"bad parameter {where}: {first.get('msg', 'invalid')}"}, status_code=422)


class OneLineErrors:
    """ASGI middleware: an unexpected exception is logged here with its traceback and answered 500 in one line.

    Starlette's own handler for Exception answers too but then re-raises, and uvicorn drops the connection;
    this one ends the exchange cleanly, so a client's next request on the same connection is served.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            log.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=exc)
            if started:  # half an answer is out: nothing clean is left to send
                raise
            reason = f"internal error ({type(exc).__name__}); the details are in the server's log"
            await JSONResponse({"detail": reason}, status_code=500)(scope, receive, send)


def public_card(model: LoadedModel) -> dict[str, Any]:
    """The model card for the page: no training config or folder paths (the server may face a network)."""
    card = {k: v for k, v in model.card.items() if k not in ("config", "checkpoint")}
    card["checkpoint"] = Path(model.card["checkpoint"]).name
    card["thresholds"] = dict(zip(model.labels, model.thresholds, strict=True))
    card["calibrated"] = model.calibration is not None and model.calibration.temperature is not None
    card["heatmaps"] = model.explainable
    card["notice"] = NOTICE
    return _finite(card)


def _finite(value: Any) -> Any:
    """NaN and infinities as None: JSON has no such numbers (a metric can be undefined)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
