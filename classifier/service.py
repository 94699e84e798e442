"""The HTTP service behind ``intake serve`` (needs the ``serve`` extra: FastAPI + uvicorn).

Endpoints: ``POST /v1/classify`` (one SPEC §1 request -> one SPEC §2 result),
``POST /v1/classify/batch`` (``{"requests": [...]}`` -> ``{"results": [...]}``, a bad
item becomes an error row and the others are still classified), ``GET /v1/schema``,
``GET /healthz``, and the generated ``/docs`` and ``/openapi.json``.

How it is put together:

- The classifier (model and rules) is loaded once per worker process, at start-up
  (the app's lifespan), before the port accepts connections, with the pipeline of every
  language the rules have a pack for.
- One classification thread per process owns the classifier. Endpoints hand it work
  and await the answer, so the event loop - and ``/healthz`` - stays responsive while
  it computes. Single requests that are waiting at the same moment are classified
  together in one :meth:`Classifier.classify_many` call (up to ``COALESCE_ITEMS``):
  the same results, less overhead per request under load, no added wait when idle.
  Batches (and long single texts) are classified a chunk at a time (``CHUNK_CHARS``),
  taking turns with the single requests, so a single request waits for at most one
  chunk however big the batch. Each row is classified and encoded on its own terms: a
  row that fails either way becomes that row's error (``E059``), never the batch's.
- A small ASGI layer in front of FastAPI gives every request an id (echoed as
  ``X-Request-ID``), enforces the content type, the body size (from ``Content-Length``
  and again while reading) and the body deadline (408 ``E058``), writes one access-log
  line per request (never the body), and turns an unexpected exception into a 500 with
  the request id.
- Under it, the HTTP protocol (:class:`GuardedHTTPProtocol`) drops a connection whose
  request headers do not arrive in time (408 ``E058``) and bounds the open connections;
  uvicorn gives in-flight requests ``shutdown_timeout_s`` after SIGTERM (see
  :class:`ServiceLimits`).
- Fields the request model does not know are ignored (pipelines forward ticket
  metadata; the CLI ignores extra columns too). Every error is
  ``{"error": {"code": "E05x", "message": "..."}}``.
- Every string must be valid Unicode: a lone surrogate (JSON ``"\\ud800"``) in ``text``,
  ``subject``, ``id`` or an attachment name is refused (422 ``E053``; in a batch, that
  item's error row). An error row's ``id`` is the item's id, or its row number when it
  has none or one that cannot be encoded.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from concurrent.futures import Future
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, NamedTuple

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from . import spec
from .access import api_keys_from_env, bearer_owner, new_api_key
from .classify import Classifier
from .errors import Errors, InputError, IntakeError
from .locations import model_source
from .model_files import library_versions, read_manifest
from .request import MAX_ATTACHMENTS, NumberedRecord, Request
from .result import result_schema
from .rules import load_rules
from .store import Store, TicketConflict, shown_url

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
#: Most requests classified together in one coalesced classify_many call (and in one
#: chunk of a batch).
COALESCE_ITEMS = 64
#: Characters (text + subject) classified in one go: the most a coalesced call or a
#: batch chunk takes on (~0.1 s of CPU), so about the longest a single request waits for
#: a batch's turn. One item longer than this is a chunk of its own (at most
#: ``MAX_TEXT_CHARS``: ~0.5 s).
CHUNK_CHARS = 20_000
#: A job of at most this many characters (and COALESCE_ITEMS requests) is small: it is
#: coalesced with other small ones. Larger ones (batches, long texts) go in chunks.
SMALL_JOB_CHARS = 10_000
#: Seconds a client has to send a request's headers, from connecting or, on a kept-alive
#: connection, from the request's first byte (else 408 E058 and the connection is closed).
HEADER_TIMEOUT_S = 10
#: Seconds a client has to send a request's whole body once its headers are in (408 E058).
BODY_TIMEOUT_S = 30
#: Seconds in-flight requests get to finish after SIGTERM before they are cancelled.
SHUTDOWN_TIMEOUT_S = 10
#: Most open connections per worker process; also kept ``FD_RESERVE`` below the
#: process's open-file limit. Beyond it a new connection displaces the longest-waiting
#: one that is idle or still sending its request, or else gets 503 E070.
MAX_CONNECTIONS = 1000
#: File descriptors left for everything but connections (model files, logs, pipes).
FD_RESERVE = 64
#: Characters classified after which the worker, once idle for ``TRIM_IDLE_S`` (the
#: answers sent and freed by then), hands freed memory back to the operating system
#: (glibc keeps it otherwise; it takes ~1 ms).
TRIM_AFTER_CHARS = 100_000
TRIM_IDLE_S = 0.5

BATCH_PATH = "/v1/classify/batch"
#: Paths under it need an API key (``Authorization: Bearer KEY``).
API_PREFIX = "/v1/"
#: The agents' desk (classifier/desk.py): a login session instead of an API key; its
#: forms are sent as FORM, not JSON.
DESK_PREFIX = "/desk"
FORM = "application/x-www-form-urlencoded"
ENDPOINTS = ("POST /v1/classify", f"POST {BATCH_PATH}", "POST /v1/tickets", "GET /v1/tickets/{id}",
             "GET /v1/schema", "GET /healthz", "GET /desk", "GET /docs", "GET /openapi.json")
#: Environment variables through which ``run(workers > 1)`` configures each worker.
ENV_MODEL_DIR = "INTAKE_MODEL_DIR"
ENV_RULES_DIR = "INTAKE_RULES_DIR"
ENV_LIMITS = "INTAKE_SERVICE_LIMITS"

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: A lone surrogate: what ``json.loads`` makes of ``"\\ud800"``; no UTF-8 encoder takes it.
_SURROGATE = re.compile("[\\ud800-\\udfff]")
_CODE = re.compile(r"\[(E\d{3})\]")


@dataclass(frozen=True)
class ServiceLimits:
    """Size, time and connection limits the service enforces (see the module constants
    for the defaults and what each one means; times are whole seconds)."""

    max_body_bytes: int = MAX_BODY_BYTES
    max_batch_body_bytes: int = MAX_BATCH_BODY_BYTES
    max_batch: int = MAX_BATCH
    max_text_chars: int = MAX_TEXT_CHARS
    max_subject_chars: int = MAX_SUBJECT_CHARS
    max_pending: int = MAX_PENDING
    header_timeout_s: int = HEADER_TIMEOUT_S
    body_timeout_s: int = BODY_TIMEOUT_S
    shutdown_timeout_s: int = SHUTDOWN_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS

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
        language: str | None = Field(None, max_length=16, pattern=r"^[A-Za-z]{2}(?:[-_][A-Za-z0-9]{2,8})?$",
                                     description="ISO 639-1 code when known (en, ru, de …; pt-BR is read as pt); "
                                                 "otherwise detected from the text (SPEC §9).")

        @field_validator("subject", "id", "channel", "product", "language", mode="before")
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

        @field_validator("text", "subject", "id", "attachments", mode="before")
        @classmethod
        def _valid_unicode(cls, value: Any) -> Any:
            texts = [value] if isinstance(value, str) else value if isinstance(value, list) else ()
            for i, text in enumerate(texts):
                bad = _SURROGATE.search(text) if isinstance(text, str) else None
                if bad is not None:
                    where = f"name {i + 1} " if not isinstance(value, str) else ""
                    raise PydanticCustomError(
                        "unicode", f"{where}has a lone surrogate (U+{ord(bad.group()):04X}) at character "
                                   f"{bad.start()}, which is not valid Unicode")
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


class Row(NamedTuple):
    """One classified request as the service sends it."""

    json: bytes  #: the result, or the error row, as JSON
    error: str | None  #: the error message when it is an error row


#: The id of the request being handled (set by the request gate), for the worker's log lines.
_request_id: ContextVar[str | None] = ContextVar("intake_request_id", default=None)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _error_row(rid: str | None, row: int, field: str | None, message: str) -> bytes:
    """An error row as JSON; an id that cannot be encoded is replaced by the row number
    (and a field or message that cannot be, escaped)."""
    if rid is not None and not _encodable(rid):
        rid = str(row)
    try:
        return _json_bytes({"id": rid, "error": {"row": row, "field": field, "message": message}})
    except (TypeError, ValueError):
        def escaped(text: str | None) -> str | None:
            return None if text is None else text.encode("utf-8", "backslashreplace").decode()

        return _json_bytes({"id": rid, "error": {"row": row, "field": escaped(field), "message": escaped(message)}})


def _frames(exc: BaseException) -> str:
    """The traceback's frames: an arbitrary exception's message may quote the request."""
    return "".join(traceback.format_tb(exc.__traceback__)).rstrip()


_libc: Any = None


def _release_memory() -> None:
    """Hand freed heap memory back to the operating system (glibc keeps it otherwise,
    above all in the arena of a thread that worked on a large batch); no-op elsewhere."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


@dataclass(eq=False)
class _Job:
    """Requests from one HTTP request, classified in one go (small) or in chunks."""

    requests: list[Request]
    rows: list[int]
    future: Future
    numbered: bool  # rows are named in error messages (a batch)
    request_id: str | None
    chars: int
    out: list[Row | None]  # filled in as its requests are classified
    next: int = 0  # the first request not classified yet (large jobs)
    failures: int = 0


class ClassifyWorker:
    """One thread that owns the classifier. Small jobs (single requests) waiting at the
    same moment are coalesced into one ``classify_many`` call; large ones (batches, long
    texts) are classified a chunk at a time, round robin, taking turns with the small
    ones, so a single request waits for at most one chunk. A request that fails to be
    classified or encoded becomes its own error row (E059; the failure is logged under
    the request id) and its neighbours are classified without it. ``submit`` is safe
    from any thread."""

    def __init__(self, classifier: Classifier, max_pending: int = MAX_PENDING,
                 coalesce_items: int = COALESCE_ITEMS, chunk_chars: int = CHUNK_CHARS,
                 small_job_chars: int = SMALL_JOB_CHARS) -> None:
        self.classifier = classifier
        self.max_pending = max_pending
        self.coalesce_items = coalesce_items
        self.chunk_chars = chunk_chars
        self.small_job_chars = small_job_chars
        self.pending = 0
        self._lock = threading.Condition()
        self._small: deque[_Job] = deque()
        self._large: deque[_Job] = deque()
        self._stopping = False
        self._chars = 0  # classified since memory was last released
        self._thread = threading.Thread(target=self._loop, name="intake-classify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the call under way; queued work is dropped (its futures cancelled)."""
        with self._lock:
            self._stopping = True
            dropped = [*self._small, *self._large]
            self._small.clear()
            self._large.clear()
            self._lock.notify()
        for job in dropped:
            self._finish(job, cancel=True)
        self._thread.join(timeout)

    def submit(self, requests: list[Request], rows: list[int] | None = None) -> Future:
        """Queue requests; the future's result is their :class:`Row`\\ s in order. ``rows``
        numbers them in error rows (a batch); without it they are numbered from 1 and
        error messages do not name a row."""
        chars = sum(len(r.text) + len(r.subject or "") for r in requests)
        job = _Job(requests, rows or list(range(1, len(requests) + 1)), Future(), rows is not None,
                   _request_id.get(), chars, [None] * len(requests))
        with self._lock:
            if self._stopping or (self.pending and self.pending + len(requests) > self.max_pending):
                raise ServiceBusy(self.pending)
            self.pending += len(requests)
            small = len(requests) <= self.coalesce_items and chars <= self.small_job_chars
            (self._small if small else self._large).append(job)
            self._lock.notify()
        return job.future

    def _loop(self) -> None:
        small_turn = True
        while True:
            with self._lock:
                while not (self._small or self._large or self._stopping):
                    if self._chars < TRIM_AFTER_CHARS:
                        self._lock.wait()
                    elif not self._lock.wait(TRIM_IDLE_S):
                        self._chars = 0
                        _release_memory()
                if self._stopping:
                    return
                if self._small and (small_turn or not self._large):
                    jobs, chunk = self._take_small(), None
                else:
                    jobs, chunk = [], self._large.popleft()
            small_turn = chunk is not None
            try:
                if chunk is not None:
                    self._run_chunk(chunk)
                else:
                    self._run_small(jobs)
            except Exception as exc:  # noqa: BLE001 - a fault here must not stop the thread
                log.error("classification thread: unhandled %s\n%s", type(exc).__name__, _frames(exc))
                for job in jobs if chunk is None else [chunk]:
                    self._abandon(job, exc)

    def _take_small(self) -> list[_Job]:
        """Small jobs to classify together (called holding the lock)."""
        jobs, size, chars = [], 0, 0
        while self._small:
            job = self._small[0]
            if jobs and (size + len(job.requests) > self.coalesce_items or chars + job.chars > self.chunk_chars):
                break
            jobs.append(self._small.popleft())
            size, chars = size + len(job.requests), chars + job.chars
        return jobs

    def _run_small(self, jobs: list[_Job]) -> None:
        live = []
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                live.append(job)
            else:  # the awaiting request was cancelled before its turn
                self._finish(job, cancel=True)
        self._classify([(job, i) for job in live for i in range(len(job.requests))])
        self._chars += sum(job.chars for job in live)
        for job in live:
            self._finish(job)

    def _run_chunk(self, job: _Job) -> None:
        if job.future.cancelled():  # the awaiting request was cancelled (e.g. at shutdown)
            self._finish(job, cancel=True)
            return
        start, end, chars = job.next, job.next, 0
        while end < len(job.requests) and end - start < self.coalesce_items:
            req = job.requests[end]
            size = len(req.text) + len(req.subject or "")
            if end > start and chars + size > self.chunk_chars:
                break
            end, chars = end + 1, chars + size
        self._classify([(job, i) for i in range(start, end)])
        job.next = end
        self._chars += chars
        with self._lock:
            self.pending -= end - start
            if end < len(job.requests) and not self._stopping:
                self._large.append(job)  # its next chunk after the other jobs' turns
                return
        if end < len(job.requests):  # stopping: drop the rest
            self._finish(job, cancel=True)
        elif job.future.set_running_or_notify_cancel():
            self._deliver(job)

    def _classify(self, items: list[tuple[_Job, int]]) -> None:
        """Classify and encode ``items`` into their jobs' ``out``; when classify_many
        fails, each half is tried on its own, down to the row that fails."""
        if not items:
            return
        try:
            results = list(self.classifier.classify_many(
                [NumberedRecord(job.rows[i], job.requests[i]) for job, i in items]))
            if len(results) != len(items):
                raise RuntimeError(f"classify_many gave {len(results)} results for {len(items)} requests")
        except Exception as exc:  # noqa: BLE001 - becomes the failing row's error row
            if len(items) == 1:
                self._failed(*items[0], exc, "classified")
                return
            half = len(items) // 2
            self._classify(items[:half])
            self._classify(items[half:])
            return
        for (job, i), result in zip(items, results):
            if job.requests[i].id is None:  # classify_many numbers id-less requests; a single one keeps None
                result.id = None
            try:
                job.out[i] = Row(_json_bytes(result.to_dict()), result.error["message"] if result.error else None)
            except Exception as exc:  # noqa: BLE001 - e.g. a string orjson cannot encode
                self._failed(job, i, exc, "encoded as JSON")

    def _failed(self, job: _Job, i: int, exc: Exception, stage: str) -> None:
        row = job.rows[i]
        job.failures += 1
        if job.failures == 1:  # one traceback per job; the count comes when it is done
            log.error("request_id=%s row %d not %s: %s\n%s", job.request_id, row, stage, type(exc).__name__,
                      _frames(exc))
        message = Errors.E059.format(where=f"row {row}: " if job.numbered else "", stage=stage,
                                     request_id=job.request_id or "-")
        job.out[i] = Row(_error_row(job.requests[i].id, row, None, message), message)

    def _finish(self, job: _Job, cancel: bool = False) -> None:
        """Deliver a small job, or drop any job (``cancel``); either way its requests not
        yet counted off (large jobs count off each chunk) leave ``pending``."""
        with self._lock:
            self.pending -= len(job.requests) - job.next
        if cancel:
            job.future.cancel()
        else:
            self._deliver(job)

    def _abandon(self, job: _Job, exc: Exception) -> None:
        """Fail a job (the request gate answers 500 E055) and release its pending count."""
        if job.future.done():  # delivered or cancelled: its count is released already
            return
        with self._lock:
            self.pending -= len(job.requests) - job.next
            job.next = len(job.requests)
            if job in self._large:
                self._large.remove(job)
        job.future.set_exception(exc)

    def _deliver(self, job: _Job) -> None:
        if job.failures > 1:
            log.error("request_id=%s %d of %d rows not classified or encoded", job.request_id, job.failures,
                      len(job.requests))
        job.future.set_result(job.out)


# -- the ASGI layer in front of FastAPI ----------------------------------------------------
class _Disconnected(Exception):
    pass


class RequestGate:
    """Request id, content type, body size and deadline, access log and last-resort 500
    (pure ASGI). The whole body must arrive within ``body_timeout_s`` of the headers
    (uvicorn sets no such deadline), else 408 E058 and the connection is closed."""

    def __init__(self, app: Callable[..., Awaitable[None]], limits: ServiceLimits,
                 direct: dict[str, Callable[[bytes], Awaitable[Response | None]]] | None = None,
                 api_keys: tuple[str, ...] = ()) -> None:
        self.app = app
        self.limits = limits
        #: POST path -> an answer for a body it can take on its own, or None to hand the
        #: request on to the app (which gives every error answer)
        self.direct = direct or {}
        #: keys accepted on the API's paths (``/v1/...``); none: every API call is refused
        self.api_keys = api_keys

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        _request_id.set(rid)  # this request's task only
        method, path = scope["method"], scope["path"]
        start = time.perf_counter()
        state = {"status": 0, "started": False, "bytes_in": 0}

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            if path.startswith(API_PREFIX):
                caller = bearer_owner(headers.get("authorization"), self.api_keys)
                if caller is None:
                    refused = _error(401, Errors.E077)
                    refused.headers["www-authenticate"] = 'Bearer realm="intake"'
                    await refused(scope, receive, send_with_id)
                    return
                scope["state"]["caller"] = caller
            if method in ("POST", "PUT", "PATCH"):
                refused = self._check_headers(headers, path)
                if refused is not None:
                    await refused(scope, receive, send_with_id)
                    return
                try:
                    async with asyncio.timeout(self.limits.body_timeout_s):
                        body, refused = await self._read_body(receive, path, state)
                except TimeoutError:
                    refused = _error(408, Errors.E058.format(part="body", seconds=self.limits.body_timeout_s))
                    refused.headers["connection"] = "close"  # what is still coming is not a request
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
        if media != "application/json" and not (path.startswith(DESK_PREFIX) and media == FORM):
            return _error(415, Errors.E051.format(got=ctype[:100] or "(none)"))
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._limit(path):
            return _error(413, Errors.E050.format(size=int(length), limit=self._limit(path), path=path))
        return None

    async def _read_body(self, receive: Callable, path: str, state: dict) -> tuple[bytes, JSONResponse | None]:
        """(body, refusal or None); counts the bytes read in ``state["bytes_in"]``."""
        limit, chunks = self._limit(path), []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            state["bytes_in"] += len(chunk)
            size = state["bytes_in"]
            if size > limit:  # no Content-Length (chunked), or a lying one
                return b"", _error(413, Errors.E050.format(size=f"at least {size}", limit=limit, path=path))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not body.strip():
            return body, _error(400, Errors.E052.format(detail="the body is empty; send a JSON object."))
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return body, _error(400, Errors.E052.format(detail=f"the body is not UTF-8 (byte {exc.start})."))
        return body, None


def _replay(body: bytes, receive: Callable) -> Callable:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# -- the HTTP protocol under it ------------------------------------------------------------
def _connection_cap(limit: int) -> int:
    """``limit``, or fewer, so that connections leave ``FD_RESERVE`` of the open-file limit."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not Unix
        return limit
    if soft == resource.RLIM_INFINITY:
        return limit
    return max(1, min(limit, max(soft // 2, soft - FD_RESERVE)))


class GuardedHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP/1.1 protocol (httptools, else h11) with the connection limits of
    :class:`ServiceLimits`, which uvicorn lacks, or applies only once a request's
    headers are in (``limit_concurrency``) so that stalled clients keep their sockets:

    - a request's headers must arrive within ``header_timeout_s`` of connecting or, on a
      kept-alive connection, of the request's first byte; else 408 E058 (nothing, when
      nothing came) and the connection is closed;
    - at SIGTERM, a connection still sending its request is closed at once;
    - at most ``max_connections`` are open (fewer under a low open-file limit, see
      :func:`_connection_cap`). A new one beyond that displaces the connection that has
      waited longest while idle or sending its request (headers before bodies); when
      every one is being answered, the new one gets 503 E070 and is closed.
    """

    #: The limits of this server's connections; None: from ``$INTAKE_SERVICE_LIMITS``
    #: (which ``run`` sets for worker processes), else the defaults.
    limits: ServiceLimits | None = None
    _cap: int | None = None
    _head_timer: asyncio.TimerHandle | None = None
    _head_started = False  # bytes of a request came, not yet all its headers
    _seen_cycle: Any = None
    _since = 0.0  # when the connection was last opened, idle or began a request

    @classmethod
    def with_limits(cls, limits: ServiceLimits) -> type["GuardedHTTPProtocol"]:
        """This protocol for a server with ``limits``."""
        return type(cls.__name__, (cls,), {"limits": limits, "_cap": None})

    @classmethod
    def _settings(cls) -> tuple[ServiceLimits, int]:
        if cls.limits is None:
            raw = os.environ.get(ENV_LIMITS)
            cls.limits = ServiceLimits(**json.loads(raw)) if raw else ServiceLimits()
        if cls._cap is None:
            cls._cap = _connection_cap(cls.limits.max_connections)
        return cls.limits, cls._cap

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._since = self.loop.time()
        limits, cap = self._settings()
        if len(self.connections) > cap and not self._make_room(cap):
            self._refuse(503, Errors.E070.format(limit=cap), "too_many_connections")
            return
        self._head_timer = self.loop.call_later(limits.header_timeout_s, self._head_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not self._seen_cycle:  # a request's headers are in
            self._seen_cycle, self._since, self._head_started = self.cycle, self.loop.time(), False
            self._disarm()
        if not self._in_request() and not self.transport.is_closing():
            self._head_started = True
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self._settings()[0].header_timeout_s, self._head_timeout)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """At shutdown, a request whose body is still arriving is dropped (the request
        gate logs it as 499), like one still sending its headers: only requests already
        under way get ``shutdown_timeout_s`` to finish."""
        if self._in_request() and self.cycle.more_body:
            self.transport.close()
            return
        super().shutdown()

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_request() or self.transport.is_closing():
            return
        if self._head_started and (self.cycle is None or not self.cycle.more_body):
            seconds = self._settings()[0].header_timeout_s
            self._refuse(408, Errors.E058.format(part="headers", seconds=seconds), "header_timeout")
        else:  # nothing came, or only the rest of a body already answered
            self.transport.close()

    def _waiting(self) -> tuple[int, float] | None:
        """(0 idle or sending headers / 1 sending a body, since when), or None when busy."""
        if self.transport is None or self.transport.is_closing():
            return None
        if not self._in_request():
            return 0, self._since
        return (1, self._since) if self.cycle.more_body else None

    def _make_room(self, cap: int) -> bool:
        """Close the connection that has waited longest; False when none is waiting."""
        others = [c for c in self.connections if c is not self and isinstance(c, GuardedHTTPProtocol)]
        if sum(1 for c in others if not c.transport.is_closing()) < cap:
            return True  # the excess is connections already closing
        waiting = [(w, c) for c in others if (w := c._waiting()) is not None]
        if not waiting:
            return False
        _, victim = min(waiting, key=lambda wc: wc[0])
        access_log.info("connection=%s status=- reason=displaced", _peer(victim.client))
        victim.transport.close()
        return True

    def _refuse(self, status: int, message: str, reason: str) -> None:
        """Answer ``status`` with a coded error before any request is read, and close."""
        code = _CODE.match(message)
        body = _json_bytes({"error": {"code": code.group(1) if code else "E055", "message": message}})
        head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
        self.transport.write(head.encode("latin-1") + body)
        self.transport.close()
        access_log.info("connection=%s status=%d reason=%s", _peer(self.client), status, reason)


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"


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
               rules_dir: str | Path | None = None, limits: ServiceLimits = ServiceLimits(),
               api_keys: list[str] | None = None, store: Store | None = None,
               database_url: str | None = None) -> FastAPI:
    """The FastAPI app. Without ``classifier`` it loads ``model_dir``/``rules_dir`` (the
    bundled ones by default) once, at start-up.

    ``api_keys`` are the keys the API accepts (default: ``$INTAKE_API_KEYS``; with none,
    one is made and printed to standard error once). ``store`` is the desk's store
    (default: opened at ``database_url``, else ``$INTAKE_DATABASE_URL``, else
    ``sqlite:///intake.db``; its schema is brought up to date here)."""
    ClassifyRequest, BatchRequest = request_models(limits)
    TicketRequest = ticket_model(ClassifyRequest)
    keys = list(api_keys) if api_keys is not None else api_keys_from_env()
    if not keys:
        keys = [new_api_key()]
        print(f"intake: no INTAKE_API_KEYS set; the API key of this run is {keys[0]}\n"
              f"intake: send it as 'Authorization: Bearer {keys[0]}'", file=sys.stderr, flush=True)
    own_store = store is None
    if store is None:
        store = Store.open(database_url)
        log.info("store: %s", shown_url(str(store.engine.url)))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clf = classifier if classifier is not None else Classifier.load(model_dir, rules_dir=rules_dir)
        clf.analyser.warm_up()  # every language's pipeline now, not on some customer's first request
        worker = ClassifyWorker(clf, max_pending=limits.max_pending)
        worker.start()
        app.state.classifier, app.state.worker = clf, worker
        app.state.store = store
        app.state.health = health_info(clf, limits)
        log.info("intake service ready: model %s, rules %s", (app.state.health["model"] or {}).get("id"),
                 clf.rules_digest[:12])
        try:
            yield
        finally:
            worker.stop()  # queued work is dropped: in-flight requests had shutdown_timeout_s
            if own_store:
                store.close()

    app = FastAPI(title="intake", version=_versions()["intake-classifier"], lifespan=lifespan,
                  description="Pre-screen support requests against the Bitrix24 SLA (SPEC §1 in, SPEC §2 out).")

    schema = {k: v for k, v in result_schema().items() if not k.startswith("$")}
    errors = {status: {"model": ErrorResponse, "description": text} for status, text in (
        (400, "Body is not valid JSON (E052)"), (413, "Body too large (E050)"),
        (415, "Content type is not application/json (E051)"),
        (408, "The body did not arrive within body_timeout_s (E058)"),
        (422, "A field is missing, of the wrong type, over its limit or not valid Unicode (E053, E054, E03x)"),
        (500, "Unexpected error, or the request could not be classified; the message names the request id "
              "(E055, E059)"),
        (503, "Too much queued work (E057), or too many open connections (E070)"))}

    async def classify(requests: list[Request], rows: list[int] | None = None) -> list[Row]:
        return await asyncio.wrap_future(app.state.worker.submit(requests, rows))

    def answer(row: Row) -> Response:
        """A single request's answer: its result, or why it could not be classified (500)."""
        if row.error is not None:
            return _error(500, row.error)
        return Response(row.json, media_type="application/json")

    def to_request(item: BaseModel, row: int) -> Request:
        return Request.from_mapping(item.model_dump(exclude_none=True), row=row)

    # The body models are local to this app, so the endpoints get real (not string)
    # annotations and are registered with add_api_route below.
    async def classify_one(body: Any) -> Response:
        (row,) = await classify([to_request(body, row=1)])
        return answer(row)

    async def classify_one_directly(body: bytes) -> Response | None:
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
        (row,) = await asyncio.wrap_future(future)
        return answer(row)

    async def classify_batch(body: Any) -> Response:
        """Rows are encoded one by one (in the classification thread for the classified
        ones), so a row that cannot be encoded is that row's error, not the batch's."""
        out: list[bytes | None] = []  # an error row, or None: classified
        good: list[Request] = []
        rows: list[int] = []
        failed = 0
        for row, item in enumerate(body.requests, 1):
            rid = item.get("id") if isinstance(item, dict) else None
            rid = str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) and rid != "" else str(row)
            try:
                if not isinstance(item, dict):
                    raise InputError(Errors.E036.format(row=row), row=row)
                req = to_request(ClassifyRequest.model_validate(item), row=row)
            except ValidationError as exc:
                field, message = _validation_message(exc.errors()[0], f"row {row}: ", 0)
                out.append(_error_row(rid, row, field, message))
                failed += 1
                continue
            except InputError as exc:
                out.append(_error_row(rid, row, exc.field, str(exc)))
                failed += 1
                continue
            good.append(req if req.id is not None else replace(req, id=str(row)))
            rows.append(row)
            out.append(None)
        results = iter(await classify(good, rows) if good else [])
        parts = []
        for part in out:
            if part is None:
                classified = next(results)
                part, failed = classified.json, failed + (classified.error is not None)
            parts.append(part)
        return Response(b'{"results":[%s],"count":%d,"failed":%d}' % (b",".join(parts), len(parts), failed),
                        media_type="application/json")

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

    async def post_ticket(body: Any, request: StarletteRequest) -> Response:
        """Classify and store a request; the same id again gives the stored ticket. A
        new id is the common case, so the request is classified before the store is
        asked (one trip to the database); a repeated one is classified in vain."""
        req = to_request(body, row=1)
        by = request.scope["state"].get("caller", "-")
        (row,) = await classify([req])
        if row.error is not None:
            return answer(row)
        clf = app.state.classifier
        try:
            stored, created = await run_in_threadpool(
                store.add_ticket, req, json.loads(row.json), by=by, received_at=body.received_at,
                model_sha256=clf.manifest.get("model_sha256"), rules_digest=clf.rules_digest)
        except TicketConflict as exc:
            return _error(409, str(exc), "id")
        return Response(_json_bytes(ticket_view(stored)), status_code=201 if created else 200,
                        media_type="application/json")

    async def get_ticket(ticket_id: str) -> Response:
        stored = await run_in_threadpool(store.get_ticket, ticket_id)
        if stored is None:
            return _error(404, Errors.E074.format(id=ticket_id))
        return Response(_json_bytes(ticket_view(stored)), media_type="application/json")

    post_ticket.__annotations__["body"] = TicketRequest
    app.add_api_route("/v1/tickets", post_ticket, methods=["POST"], response_model=None,
                      summary="Store and classify a request for the desk (idempotent on its id)",
                      responses={201: {"description": "Stored and classified: the ticket"},
                                 200: {"description": "This id was stored before with the same text: the stored ticket"},
                                 409: {"model": ErrorResponse, "description": "This id is stored with another text (E073)"},
                                 401: {"model": ErrorResponse, "description": "No or an unknown API key (E077)"},
                                 **errors})
    app.add_api_route("/v1/tickets/{ticket_id:path}", get_ticket, methods=["GET"], response_model=None,
                      summary="A stored ticket: masked request, result, current labels, corrections",
                      responses={404: {"model": ErrorResponse, "description": "No such ticket (E074)"}})

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

    from .desk import add_desk  # the desk's imports (jinja2, multipart) only with the app

    add_desk(app, store)
    app.add_middleware(RequestGate, limits=limits, direct={"/v1/classify": classify_one_directly},
                       api_keys=tuple(keys))
    return app


def ticket_model(request_model: type[BaseModel]) -> type[BaseModel]:
    """The body of ``POST /v1/tickets``: a request (SPEC §1) whose ``id`` is required,
    and optionally when the helpdesk received it."""

    class TicketRequest(request_model):  # type: ignore[valid-type, misc]
        """A request to store for the desk. ``id`` is required: the same id again gives
        the stored ticket. Fields not listed here are ignored."""

        id: str = Field(min_length=1, max_length=MAX_ID_CHARS,
                        description="The helpdesk's ticket number; a whole number is read as a string.")
        received_at: datetime | None = Field(
            None, description="When the helpdesk received the request (ISO 8601; UTC when no offset is given); "
                              "default: now. The SLA due time counts from it.")

        @field_validator("received_at")
        @classmethod
        def _as_utc(cls, value: datetime | None) -> datetime | None:
            if value is None:
                return None
            return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)

    return TicketRequest


def ticket_view(ticket: dict[str, Any]) -> dict[str, Any]:
    """A stored ticket as ``/v1/tickets`` answers it (times in ISO 8601, UTC)."""
    keys = ("id", "subject", "text", "channel", "product", "attachments", "status", "result", "labels", "reply",
            "model_sha256", "rules_digest")
    out = {k: ticket[k] for k in keys}
    out["received_at"], out["due_at"] = ticket["received_at"].isoformat(), ticket["due_at"].isoformat()
    out["desk_path"] = f"/desk/tickets/{ticket['seq']}"
    out["corrections"] = [{"field": c["field"], "old": c["old"], "new": c["new"], "by": c["by"],
                           "at": c["at"].isoformat(), "model_sha256": c["model_sha256"],
                           "rules_digest": c["rules_digest"]} for c in ticket["corrections"]]
    return out


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
    folder is reported before any worker starts. Connections are guarded by
    :class:`GuardedHTTPProtocol`; after SIGTERM, in-flight requests get
    ``limits.shutdown_timeout_s`` before they are cancelled."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise IntakeError(Errors.E028.format(name="workers", value=workers, allowed="1 or more"))
    options: dict[str, Any] = {"host": host, "port": port, "access_log": False, "log_config": LOG_CONFIG,
                               "server_header": False, "timeout_graceful_shutdown": limits.shutdown_timeout_s}
    read_manifest(model_source(model_dir).path)  # fail fast, before loading rules
    if workers == 1:
        clf = Classifier.load(model_dir, rules_dir=rules_dir)
        uvicorn.run(create_app(clf, limits=limits), http=GuardedHTTPProtocol.with_limits(limits), **options)
        return
    load_rules(rules_dir)
    Store.open().close()  # the schema upgraded once, before the workers open the store
    if not api_keys_from_env():  # one key for every worker, printed once
        key = new_api_key()
        os.environ["INTAKE_API_KEYS"] = key
        print(f"intake: no INTAKE_API_KEYS set; the API key of this run is {key}\n"
              f"intake: send it as 'Authorization: Bearer {key}'", file=sys.stderr, flush=True)
    os.environ[ENV_MODEL_DIR] = "" if model_dir is None else str(Path(model_dir).resolve())
    os.environ[ENV_RULES_DIR] = "" if rules_dir is None else str(Path(rules_dir).resolve())
    os.environ[ENV_LIMITS] = json.dumps(asdict(limits))
    # each worker's protocol reads the limits from INTAKE_SERVICE_LIMITS
    uvicorn.run("classifier.service:app_from_env", factory=True, workers=workers, http=GuardedHTTPProtocol,
                **options)
