"""Classify a batch on several cores: worker processes, results in input order.

Each worker process holds one :class:`~classifier.classify.Classifier`. With the
``fork`` start method (Linux) the workers are copies of the parent, which has loaded
the rules and model and built every language's pipeline before they start, so nothing
is loaded twice; with ``spawn`` or ``forkserver`` each worker loads the same rules and
model once, from where the parent's came from (and builds a language's pipeline when it
first meets the language).

The parent reads the records and hands them out in chunks of :data:`CHUNK` (a multiple
of the classifier's batch size, so each worker analyses exactly the batches one process
would: the output is byte for byte that of one process). A worker classifies a chunk and
encodes it in the output format (:class:`classifier.batch.Encoder`), so only the
written text travels back; the parent writes chunks in input order and keeps at most
:data:`AHEAD` chunks per worker in flight, so memory stays flat however long the input.
Warnings a worker logs (a row that failed) are logged again by the parent, in order.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any, Iterable, Iterator

from .batch import Encoded, Encoder
from .classify import BATCH_SIZE, Classifier
from .errors import Errors, IntakeError
from .request import NumberedRecord
from .result import Result

#: Records handed to a worker at a time (a multiple of BATCH_SIZE: see the module's doc).
CHUNK = 2 * BATCH_SIZE
#: Chunks in flight per worker: one being classified, one waiting, one being handed back.
AHEAD = 3

log = logging.getLogger("intake")


def cpu_count() -> int:
    """The cores this process may run on (``--jobs auto``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def classify_in_processes(classifier: Classifier, records: Iterable[Any], jobs: int, *,
                          include_text: bool = False, encode: Encoder | None = None,
                          start_method: str | None = None) -> Iterator[Encoded]:
    """``classifier.classify_many(records)`` on ``jobs`` worker processes, each result
    encoded by ``encode`` (default: JSON Lines) in the worker, in input order.

    The workers start, and the first chunks are read and handed out, when this is
    called (before the caller starts threads of its own, such as a progress bar's); the
    returned iterator gives the results and stops the workers when it ends or is closed.
    Rows are numbered as ``classify_many`` numbers them. ``start_method`` is ``fork``
    on Linux, else ``spawn``; with ``spawn`` the classifier must come
    from :meth:`Classifier.load`. A worker that dies (killed, out of memory) ends the run
    with E049."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    encode = encode or Encoder("jsonl", include_text)
    method = start_method or ("fork" if sys.platform == "linux" else "spawn")  # macOS: fork is unsafe there
    if method == "fork":
        classifier.analyser.warm_up()  # built once here, not once per worker
    settings = _Settings(None if method == "fork" else _load_arguments(classifier), include_text, encode,
                         log.getEffectiveLevel())
    global _inherited
    _inherited = classifier if method == "fork" else None
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(method),
                               initializer=_start_worker, initargs=(settings,))
    chunks = _chunks(records)
    try:  # with fork, every worker is started at the first submit
        pending: deque[Future] = deque(pool.submit(_classify_chunk, c) for c in islice(chunks, jobs * AHEAD))
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        _inherited = None
    return _in_order(pool, pending, chunks)


def _in_order(pool: ProcessPoolExecutor, pending: deque[Future],
              chunks: Iterator[list[NumberedRecord]]) -> Iterator[Encoded]:
    """The chunks' results in input order, the next chunk handed out as each comes back."""
    try:
        while pending:
            encoded, records_logged = pending.popleft().result()
            for chunk in islice(chunks, 1):
                pending.append(pool.submit(_classify_chunk, chunk))
            for record in records_logged:
                logger = logging.getLogger(record.name)
                if logger.isEnabledFor(record.levelno):
                    logger.handle(record)
            yield from encoded
    except BrokenProcessPool as exc:
        raise IntakeError(Errors.E049.format(detail=exc)) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(records: Iterable[Any]) -> Iterator[list[NumberedRecord]]:
    """Chunks of records, each numbered as ``classify_many`` numbers rows."""
    row = 0
    it = iter(records)
    while chunk := list(islice(it, CHUNK)):
        numbered = []
        for record in chunk:
            row += 1
            if isinstance(record, NumberedRecord):
                row = record.row
            else:
                record = NumberedRecord(row, record)
            numbered.append(record)
        yield numbered


def _load_arguments(classifier: Classifier) -> dict[str, Any]:
    """How to load the same classifier in a fresh process."""
    sources = classifier.sources
    if "rules" not in sources:
        raise ValueError("a classifier made without Classifier.load() cannot be loaded again in a worker "
                         "process; use the fork start method, or Classifier.load()")
    model = sources.get("model")
    return {"path": model.path if model else None, "rules_dir": sources["rules"].path,
            "use_model": classifier.model is not None}


# -- in the worker processes -----------------------------------------------------------
class _Settings:
    def __init__(self, load: dict[str, Any] | None, include_text: bool, encode: Encoder, level: int) -> None:
        self.load = load
        self.include_text = include_text
        self.encode = encode
        self.level = level


class _Kept(logging.Handler):
    """Keeps the records logged while a chunk is classified, to hand them to the parent."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None  # the arguments may not pickle
        record.exc_info, record.exc_text = None, None
        self.records.append(record)


#: the parent's classifier, which a forked worker inherits
_inherited: Classifier | None = None
_worker: dict[str, Any] = {}


def _start_worker(settings: _Settings) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    kept = _Kept()
    intake_log = logging.getLogger("intake")
    intake_log.handlers = [kept]
    intake_log.propagate = False
    intake_log.setLevel(settings.level)
    classifier = _inherited
    if classifier is None:
        classifier = Classifier.load(settings.load["path"], rules_dir=settings.load["rules_dir"],
                                     use_model=settings.load["use_model"])
        kept.records.clear()  # warnings of loading were the parent's to give
    _worker.update(classifier=classifier, settings=settings, kept=kept)


def _classify_chunk(chunk: list[NumberedRecord]) -> tuple[list[Encoded], list[logging.LogRecord]]:
    classifier: Classifier = _worker["classifier"]
    settings: _Settings = _worker["settings"]
    kept: _Kept = _worker["kept"]
    kept.records = []
    encoded = [_slim(settings.encode(result))
               for result in classifier.classify_many(chunk, include_text=settings.include_text)]
    return encoded, kept.records


def _slim(encoded: Encoded) -> Encoded:
    """The encoded row with only what progress and the summary need of its result."""
    r = encoded.result
    return Encoded(Result(id=r.id, category=r.category, scope=r.scope, severity=r.severity, error=r.error,
                          row=r.row), encoded.data)

