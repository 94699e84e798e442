"""The HTTP service behind ``intake serve`` (needs the ``serve`` extra: FastAPI + uvicorn).

Endpoints: ``POST /v1/classify`` (one SPEC §1 request -> one SPEC §2 result),
``POST /v1/classify/batch`` (``{"requests": [...]}`` -> ``{"results": [...]}``, a bad
item becomes an error row and the others are still classified), ``GET /v1/schema``,
``GET /healthz``, and the generated ``/docs`` and ``/openapi.json``.

How it is put together:

- The classifier (model and rules) is loaded once per worker process, at start-up
  (the app's lifespan), before the port accepts connections.
- One classification thread per process owns the classifier. Endpoints hand it work
  and await the answer, so the event loop - and ``/healthz`` - stays responsive while
  it computes. Single requests that are waiting at the same moment are classified
  together in one :meth:`Classifier.classify_many` call (up to ``COALESCE_ITEMS``):
  the same results, less overhead per request under load, no added wait when idle.
- A small ASGI layer in front of FastAPI gives every request an id (echoed as
  ``X-Request-ID``), enforces the content type and the body size (from
  ``Content-Length`` and again while reading), writes one access-log line per request
  (never the body), and turns an unexpected exception into a 500 with the request id.
- Fields the request model does not know are ignored (pipelines forward ticket
  metadata; the CLI ignores extra columns too). Every error is
  ``{"error": {"code": "E05x", "message": "..."}}``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import threading
import time
import traceback
import uuid
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, fields, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Literal

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from . import spec
from .classify import Classifier
from .errors import Errors, InputError, IntakeError
from .locations import model_source
from .model_files import library_versions, read_manifest
from .request import MAX_ATTACHMENTS, Request
from .result import Result, result_schema
from .rules import load_rules

log = logging.getLogger("intake.service")
access_log = logging.getLogger("intake.access")

#: Largest body of ``POST /v1/classify`` (and any other POST but the batch one).
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Largest body of ``POST /v1/classify/batch``.
MAX_BATCH_BODY_BYTES = 20 * 1024 * 1024
#: Most items in one batch.
MAX_BATCH = 1000
#: Longest ``text`` and ``subject`` (characters). Longer input is refused, not cut.
MAX_TEXT_CHARS = 100_000
MAX_SUBJECT_CHARS = 1_000
MAX_ID_CHARS = 200
#: Most requests waiting for the classification thread; beyond it new work gets 503.
MAX_PENDING = 5_000
#: Most requests classified together in one coalesced classify_many call.
COALESCE_ITEMS = 64

BATCH_PATH = "/v1/classify/batch"
ENDPOINTS = ("POST /v1/classify", f"POST {BATCH_PATH}", "GET /v1/schema", "GET /healthz", "GET /docs",
             "GET /openapi.json")
#: Environment variables through which ``run(workers > 1)`` configures each worker.
ENV_MODEL_DIR = "INTAKE_MODEL_DIR"
ENV_RULES_DIR = "INTAKE_RULES_DIR"
ENV_LIMITS = "INTAKE_SERVICE_LIMITS"

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_CODE = re.compile(r"\[(E\d{3})\]")


@dataclass(frozen=True)
class ServiceLimits:
    """Size limits the service enforces (see the module constants for the defaults)."""

    max_body_bytes: int = MAX_BODY_BYTES
    max_batch_body_bytes: int = MAX_BATCH_BODY_BYTES
    max_batch: int = MAX_BATCH
    max_text_chars: int = MAX_TEXT_CHARS
    max_subject_chars: int = MAX_SUBJECT_CHARS
    max_pending: int = MAX_PENDING

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise IntakeError(Errors.E028.format(name=f.name, value=value, allowed="a whole number >= 1"))


# -- request models (built per app, so the documented limits are the enforced ones) ----
def request_models(limits: ServiceLimits) -> tuple[type[BaseModel], type[BaseModel]]:
    """The pydantic models of one request (SPEC §1) and of a batch, for ``limits``."""

    class ClassifyRequest(BaseModel):
        """One support request (SPEC §1). Fields not listed here are ignored."""

        model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{
            "id": "T-1001", "subject": "portal down",
            "text": "Since 06:40 https://portal.example.de shows 502 for everybody, nobody can log in. "
                    "Bitrix24 Enterprise, main 24.300.100.",
            "channel": "webform"}]})

        text: str = Field(min_length=1, max_length=limits.max_text_chars,
                          description="The request body: plain text, or HTML/email with quoted replies.")
        subject: str | None = Field(None, max_length=limits.max_subject_chars,
                                    description="Classified together with text.")
        id: str | None = Field(None, max_length=MAX_ID_CHARS,
                               description="Echoed back unchanged; a whole number is echoed as a string.")
        channel: Literal[spec.CHANNELS] | None = None  # type: ignore[valid-type]
        attachments: list[str] | None = Field(None, max_length=MAX_ATTACHMENTS, description="File names.")
        product: Literal[spec.PRODUCTS] | None = None  # type: ignore[valid-type]

        @field_validator("subject", "id", "channel", "product", mode="before")
        @classmethod
        def _empty_is_absent(cls, value: Any) -> Any:
            return None if value == "" else value

        @field_validator("id", mode="before")
        @classmethod
        def _id_as_string(cls, value: Any) -> Any:
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            if value is not None and not isinstance(value, str):
                raise PydanticCustomError("id_type", "must be a string or a whole number")
            return value

        @field_validator("text")
        @classmethod
        def _not_blank(cls, value: str) -> str:
            if not value.strip():
                raise PydanticCustomError("blank", "must not be empty or only white space")
            return value

    class BatchRequest(BaseModel):
        """Up to ``max_batch`` requests; each item is checked on its own."""

        model_config = ConfigDict(extra="ignore")

        requests: list[Any] = Field(
            max_length=limits.max_batch,
            description=f"Up to {limits.max_batch} ClassifyRequest objects; an item that fails validation "
                        "becomes an error row and the other items are still classified.",
            json_schema_extra={"items": {"$ref": "#/components/schemas/ClassifyRequest"}})

    return ClassifyRequest, BatchRequest


class ErrorBody(BaseModel):
    code: str = Field(description="Error code from classifier/errors.py, e.g. E054.")
    message: str
    field: str | None = Field(None, description="The request field at fault, when there is one.")


class ErrorResponse(BaseModel):
    error: ErrorBody


try:  # orjson (the serve extra) encodes a result several times faster than the json module
    import orjson

    def _json_bytes(content: Any) -> bytes:
        return orjson.dumps(content)
except ImportError:  # pragma: no cover - serve extra installed without it
    def _json_bytes(content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class ResultResponse(JSONResponse):
    """A JSON response encoded with orjson when it is installed (same JSON, less CPU)."""

    def render(self, content: Any) -> bytes:
        return _json_bytes(content)


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    m = _CODE.match(message)
    body: dict[str, Any] = {"code": m.group(1) if m else "E055", "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


def _validation_message(err: dict[str, Any], where: str, skip: int) -> tuple[str | None, str]:
    """(field, message) for one pydantic error; ``skip`` leading ``loc`` parts are dropped."""
    loc = [str(p) for p in err.get("loc", ())[skip:]]
    field = ".".join(loc) or None
    kind = err.get("type")
    if kind in ("string_too_long", "too_long") and "max_length" in (err.get("ctx") or {}):
        unit = "characters" if kind == "string_too_long" else "items"
        size = len(err.get("input") or ())
        return field, Errors.E054.format(where=where, field=field, size=size, unit=unit, limit=err["ctx"]["max_length"])
    return field, Errors.E053.format(where=where, field=field or "body", problem=err.get("msg", "is not valid"))


# -- the classification thread -----------------------------------------------------------
class ServiceBusy(Exception):
    """More work is queued than ``ServiceLimits.max_pending``."""


class ClassifyWorker:
    """One thread that owns the classifier and classifies queued jobs, coalescing
    small ones into one ``classify_many`` call. ``submit`` is safe from any thread."""

    def __init__(self, classifier: Classifier, max_pending: int = MAX_PENDING,
                 coalesce_items: int = COALESCE_ITEMS) -> None:
        self.classifier = classifier
        self.max_pending = max_pending
        self.coalesce_items = coalesce_items
        self.pending = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[list[Request], Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="intake-classify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def submit(self, requests: list[Request]) -> Future:
        """Queue requests; the future's result is their Results in order."""
        with self._lock:
            if self.pending and self.pending + len(requests) > self.max_pending:
                raise ServiceBusy(self.pending)
            self.pending += len(requests)
        fut: Future = Future()
        self._queue.put((requests, fut))
        return fut

    def _loop(self) -> None:
        carry = None  # a job that did not fit into the previous coalesced call
        while True:
            job = carry if carry is not None else self._queue.get()
            carry = None
            if job is None:
                return
            jobs, size, stop = [job], len(job[0]), False
            while size < self.coalesce_items:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if size + len(nxt[0]) > self.coalesce_items:  # e.g. a batch: it goes next, on its own
                    carry = nxt
                    break
                jobs.append(nxt)
                size += len(nxt[0])
            self._run(jobs)
            if stop:
                return

    def _run(self, jobs: list[tuple[list[Request], Future]]) -> None:
        live = []
        for reqs, fut in jobs:
            if fut.set_running_or_notify_cancel():
                live.append((reqs, fut))
            else:  # the client went away before its turn
                self._done(len(reqs))
        if not live:
            return
        try:
            results = list(self.classifier.classify_many([r for reqs, _ in live for r in reqs]))
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            if len(live) > 1:  # one bad request must not fail its neighbours: retry each alone
                for job in live:
                    self._retry(job)
                return
            self._done(len(live[0][0]))
            live[0][1].set_exception(exc)
            return
        start = 0
        for reqs, fut in live:
            self._deliver(reqs, fut, results[start:start + len(reqs)])
            start += len(reqs)

    def _retry(self, job: tuple[list[Request], Future]) -> None:
        reqs, fut = job
        try:
            results = list(self.classifier.classify_many(reqs))
        except Exception as exc:  # noqa: BLE001
            self._done(len(reqs))
            fut.set_exception(exc)
            return
        self._deliver(reqs, fut, results)

    def _deliver(self, reqs: list[Request], fut: Future, results: list[Result]) -> None:
        for req, res in zip(reqs, results):
            if req.id is None:  # classify_many numbers id-less requests; a single one keeps None
                res.id = None
        self._done(len(reqs))
        fut.set_result(results)

    def _done(self, n: int) -> None:
        with self._lock:
            self.pending -= n


# -- the ASGI layer in front of FastAPI ----------------------------------------------------
class _Disconnected(Exception):
    pass


class RequestGate:
    """Request id, content type, body size, access log and last-resort 500 (pure ASGI)."""

    def __init__(self, app: Callable[..., Awaitable[None]], limits: ServiceLimits,
                 direct: dict[str, Callable[[bytes], Awaitable[Response | None]]] | None = None) -> None:
        self.app = app
        self.limits = limits
        #: POST path -> an answer for a body it can take on its own, or None to hand the
        #: request on to the app (which gives every error answer)
        self.direct = direct or {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        method, path = scope["method"], scope["path"]
        start = time.perf_counter()
        state = {"status": 0, "started": False, "bytes_in": 0}

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            if method in ("POST", "PUT", "PATCH"):
                refused = self._check_headers(headers, path)
                if refused is not None:
                    await refused(scope, receive, send_with_id)
                    return
                body, state["bytes_in"], refused = await self._read_body(receive, path)
                if refused is not None:
                    await refused(scope, receive, send_with_id)
                    return
                direct = self.direct.get(path) if method == "POST" else None
                answer = await direct(body) if direct is not None else None
                if answer is not None:
                    await answer(scope, receive, send_with_id)
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_with_id)
        except _Disconnected:
            state["status"] = 499  # client went away before sending its body
        except Exception as exc:  # noqa: BLE001 - never a stack trace to the client
            # The message of an arbitrary exception may quote the request, so only its
            # type and the traceback's frames are logged.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("request_id=%s unhandled %s\n%s", rid, type(exc).__name__, frames.rstrip())
            if not state["started"]:
                await _error(500, Errors.E055.format(request_id=rid))(scope, receive, send_with_id)
            else:
                state["status"] = 500
        finally:
            access_log.info("request_id=%s method=%s path=%s status=%s duration_ms=%.1f bytes_in=%d",
                            rid, method, path, state["status"], (time.perf_counter() - start) * 1000,
                            state["bytes_in"])

    def _limit(self, path: str) -> int:
        return self.limits.max_batch_body_bytes if path == BATCH_PATH else self.limits.max_body_bytes

    def _check_headers(self, headers: dict[str, str], path: str) -> JSONResponse | None:
        ctype = headers.get("content-type", "")
        media = ctype.split(";")[0].strip().lower()
        if media != "application/json":
            return _error(415, Errors.E051.format(got=ctype[:100] or "(none)"))
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._limit(path):
            return _error(413, Errors.E050.format(size=int(length), limit=self._limit(path), path=path))
        return None

    async def _read_body(self, receive: Callable, path: str) -> tuple[bytes, int, JSONResponse | None]:
        """(body, bytes read, refusal or None)."""
        limit, size, chunks = self._limit(path), 0, []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # no Content-Length (chunked), or a lying one
                return b"", size, _error(413, Errors.E050.format(size=f"at least {size}", limit=limit, path=path))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not body.strip():
            return body, size, _error(400, Errors.E052.format(detail="the body is empty; send a JSON object."))
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return body, size, _error(400, Errors.E052.format(detail=f"the body is not UTF-8 (byte {exc.start})."))
        return body, size, None


def _replay(body: bytes, receive: Callable) -> Callable:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# -- the app -------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    out = library_versions()
    for name in ("intake-classifier", "fastapi", "uvicorn", "pydantic"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover - run from a source tree
            out[name] = "unknown"
    return out


def _source(classifier: Classifier, name: str) -> dict[str, str]:
    """Where the rules or model in use came from (path, and ``given``, ``$INTAKE_…`` or ``bundled``)."""
    source = classifier.sources.get(name)
    return source.to_dict() if source is not None else {"path": None, "origin": "given"}


def health_info(classifier: Classifier, limits: ServiceLimits) -> dict[str, Any]:
    """What ``/healthz`` reports: model identity (from its manifest), rules digest, versions."""
    m = classifier.manifest
    model = None
    if classifier.model is not None:
        sha = str(m.get("model_sha256", ""))
        model = {"id": m.get("id") or f"{m.get('kind', 'model')}-{sha[:12]}", "kind": m.get("kind"),
                 "format": m.get("format"), "sha256": sha, "trained_at": m.get("trained_at"),
                 "targets": m.get("targets"), "built_with": m.get("libraries"),
                 **_source(classifier, "model")}
    return {"status": "ok", "model": model,
            "rules": {"digest": classifier.rules_digest, "count": len(classifier.analyser.ruleset.rules),
                      **_source(classifier, "rules")},
            "libraries": _versions(), "limits": asdict(limits)}


def create_app(classifier: Classifier | None = None, *, model_dir: str | Path | None = None,
               rules_dir: str | Path | None = None, limits: ServiceLimits = ServiceLimits()) -> FastAPI:
    """The FastAPI app. Without ``classifier`` it loads ``model_dir``/``rules_dir`` (the
    bundled ones by default) once, at start-up."""
    ClassifyRequest, BatchRequest = request_models(limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clf = classifier if classifier is not None else Classifier.load(model_dir, rules_dir=rules_dir)
        worker = ClassifyWorker(clf, max_pending=limits.max_pending)
        worker.start()
        app.state.classifier, app.state.worker = clf, worker
        app.state.health = health_info(clf, limits)
        log.info("intake service ready: model %s, rules %s", (app.state.health["model"] or {}).get("id"),
                 clf.rules_digest[:12])
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(title="intake", version=_versions()["intake-classifier"], lifespan=lifespan,
                  description="Pre-screen support requests against the Bitrix24 SLA (SPEC §1 in, SPEC §2 out).")

    schema = {k: v for k, v in result_schema().items() if not k.startswith("$")}
    errors = {status: {"model": ErrorResponse, "description": text} for status, text in (
        (400, "Body is not valid JSON (E052)"), (413, "Body too large (E050)"),
        (415, "Content type is not application/json (E051)"),
        (422, "A field is missing, of the wrong type or over its limit (E053, E054, E03x)"),
        (500, "Unexpected error; the message names the request id (E055)"), (503, "Too much queued work (E057)"))}

    async def classify(requests: list[Request]) -> list[Result]:
        return await asyncio.wrap_future(app.state.worker.submit(requests))

    def to_request(item: BaseModel, row: int) -> Request:
        return Request.from_mapping(item.model_dump(exclude_none=True), row=row)

    # The body models are local to this app, so the endpoints get real (not string)
    # annotations and are registered with add_api_route below.
    async def classify_one(body: Any) -> JSONResponse:
        (result,) = await classify([to_request(body, row=1)])
        return ResultResponse(result.to_dict())

    async def classify_one_directly(body: bytes) -> ResultResponse | None:
        """``classify_one`` for a body that is a valid request, read as FastAPI reads it
        (``json.loads``, then the body model) but without its per-request routing and
        dependency solving (about half of the HTTP side's work: 0.25-0.32 ms of CPU a
        request). None for any other body, or a full queue: the route then gives its
        own answer."""
        try:
            req = to_request(ClassifyRequest.model_validate(json.loads(body)), row=1)
            future = app.state.worker.submit([req])
        except (ValueError, RecursionError, InputError, ServiceBusy):  # JSON and validation errors are ValueErrors
            return None
        (result,) = await asyncio.wrap_future(future)
        return ResultResponse(result.to_dict())

    async def classify_batch(body: Any) -> JSONResponse:
        rows: list[dict[str, Any] | None] = []
        good: list[Request] = []
        for row, item in enumerate(body.requests, 1):
            rid = item.get("id") if isinstance(item, dict) else None
            rid = str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) and rid != "" else str(row)
            try:
                if not isinstance(item, dict):
                    raise InputError(Errors.E036.format(row=row), row=row)
                req = to_request(ClassifyRequest.model_validate(item), row=row)
            except ValidationError as exc:
                field, message = _validation_message(exc.errors()[0], f"row {row}: ", 0)
                rows.append(Result(id=rid, error={"row": row, "field": field, "message": message}).to_dict())
                continue
            except InputError as exc:
                rows.append(Result(id=rid, error={"row": row, "field": exc.field, "message": str(exc)}).to_dict())
                continue
            good.append(req if req.id is not None else replace(req, id=str(row)))
            rows.append(None)
        results = iter(await classify(good) if good else [])
        out = [r if r is not None else next(results).to_dict() for r in rows]
        failed = sum(1 for r in out if "error" in r)
        return ResultResponse({"results": out, "count": len(out), "failed": failed})

    classify_one.__annotations__["body"] = ClassifyRequest
    classify_batch.__annotations__["body"] = BatchRequest
    app.add_api_route("/v1/classify", classify_one, methods=["POST"], response_model=None,
                      summary="Classify one request",
                      responses={200: {"description": "The result (SPEC §2); schema at /v1/schema",
                                       "content": {"application/json": {"schema": schema}}}, **errors})
    app.add_api_route(BATCH_PATH, classify_batch, methods=["POST"], response_model=None,
                      summary=f"Classify up to {limits.max_batch} requests",
                      responses={200: {"description": "Results in input order; an item that cannot be read "
                                                      "is an error row"}, **errors})

    @app.get("/v1/schema", summary="JSON Schema of one result or error row")
    async def get_schema() -> JSONResponse:
        return JSONResponse(result_schema())

    @app.get("/healthz", summary="Liveness, model and rules identity, library versions")
    async def healthz() -> JSONResponse:
        return JSONResponse({**app.state.health, "pending": app.state.worker.pending})

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_req: Any, exc: RequestValidationError) -> JSONResponse:
        errs = list(exc.errors())
        bad_json = next((e for e in errs if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            loc = bad_json.get("loc", ())
            at = f" at position {loc[1]}" if len(loc) > 1 else ""
            return _error(400, Errors.E052.format(detail=f"{(bad_json.get('ctx') or {}).get('error', 'invalid')}{at}"))
        field, message = _validation_message(errs[0], "", 1)
        return _error(422, message, field)

    @app.exception_handler(InputError)
    async def on_input_error(_req: Any, exc: InputError) -> JSONResponse:
        return _error(422, str(exc), exc.field)

    @app.exception_handler(ServiceBusy)
    async def on_busy(_req: Any, exc: ServiceBusy) -> JSONResponse:
        return _error(503, Errors.E057.format(pending=exc.args[0], limit=limits.max_pending))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(req: Any, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code in (404, 405):
            return _error(exc.status_code, Errors.E056.format(method=req.method, path=req.url.path,
                                                              allowed=", ".join(ENDPOINTS)))
        if exc.status_code == 400:
            return _error(400, Errors.E052.format(detail=str(exc.detail)))
        return _error(exc.status_code, f"[E055] {exc.detail}")

    app.add_middleware(RequestGate, limits=limits, direct={"/v1/classify": classify_one_directly})
    return app


def app_from_env() -> FastAPI:
    """App factory for uvicorn's factory mode: dirs and limits from the environment
    (``INTAKE_MODEL_DIR``, ``INTAKE_RULES_DIR``, ``INTAKE_SERVICE_LIMITS`` as JSON)."""
    raw = os.environ.get(ENV_LIMITS)
    limits = ServiceLimits(**json.loads(raw)) if raw else ServiceLimits()
    return create_app(model_dir=os.environ.get(ENV_MODEL_DIR) or None,
                      rules_dir=os.environ.get(ENV_RULES_DIR) or None, limits=limits)


#: Logging while serving: our access lines and errors to stderr; uvicorn's own access
#: log is off (it would duplicate ours without the request id).
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        "intake": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def run(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, model_dir: str | Path | None = None,
        rules_dir: str | Path | None = None, limits: ServiceLimits = ServiceLimits()) -> None:
    """Serve until interrupted. With ``workers > 1`` each worker process loads the
    model and rules once (passed through the environment); a broken model or rules
    folder is reported before any worker starts."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise IntakeError(Errors.E028.format(name="workers", value=workers, allowed="1 or more"))
    options: dict[str, Any] = {"host": host, "port": port, "access_log": False, "log_config": LOG_CONFIG,
                               "server_header": False}
    read_manifest(model_source(model_dir).path)  # fail fast, before loading rules
    if workers == 1:
        clf = Classifier.load(model_dir, rules_dir=rules_dir)
        uvicorn.run(create_app(clf, limits=limits), **options)
        return
    load_rules(rules_dir)
    os.environ[ENV_MODEL_DIR] = "" if model_dir is None else str(Path(model_dir).resolve())
    os.environ[ENV_RULES_DIR] = "" if rules_dir is None else str(Path(rules_dir).resolve())
    os.environ[ENV_LIMITS] = json.dumps(asdict(limits))
    uvicorn.run("classifier.service:app_from_env", factory=True, workers=workers, **options)
