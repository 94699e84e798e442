"""Batch input and output: JSONL or CSV in, JSONL or CSV out, row by row.

Reading never stops at a bad row: a line that is not JSON, not an object, not
UTF-8 or too long becomes an :class:`InputError` in the stream at its place, so
the classifier reports it with its row number and goes on. JSONL rows are
numbered by line; CSV rows by record (the first row after the header is 1).
"""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, TextIO

from .errors import Errors, InputError
from .request import NumberedRecord
from .result import Result

FORMATS = ("jsonl", "csv")
#: Longest JSONL line read; longer lines are reported, not parsed.
MAX_LINE_BYTES = 16 * 1024 * 1024
csv.field_size_limit(MAX_LINE_BYTES)


def detect_format(path: str | Path | None, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(Errors.E040.format(fmt=fmt, allowed=", ".join(FORMATS)))
        return fmt
    if path is not None and str(path) != "-" and Path(path).suffix.lower() in (".csv", ".tsv"):
        return "csv"
    return "jsonl"


def read_jsonl(stream: BinaryIO) -> Iterator[NumberedRecord]:
    """Records of a JSON Lines byte stream; blank lines are skipped (their numbers kept)."""
    for row, raw in enumerate(stream, 1):
        if len(raw) > MAX_LINE_BYTES:
            yield NumberedRecord(row, InputError(Errors.E035.format(row=row, size=len(raw), limit=MAX_LINE_BYTES), row=row))
            continue
        if row == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield NumberedRecord(row, InputError(Errors.E033.format(row=row, encoding="UTF-8", detail=exc.reason), row=row))
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield NumberedRecord(row, InputError(Errors.E030.format(row=row, detail=f"{exc.msg.removesuffix(' at')} at column {exc.colno}"), row=row))
            continue
        if not isinstance(record, dict):
            yield NumberedRecord(row, InputError(Errors.E036.format(row=row), row=row))
            continue
        yield NumberedRecord(row, record)


def read_csv(stream: BinaryIO) -> Iterator[NumberedRecord]:
    """Records of a CSV byte stream with a header row; undecodable bytes fail only their row."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.DictReader(text, strict=True)  # strict: a truncated or mis-quoted record is an error row
    row = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row += 1
            yield NumberedRecord(row, InputError(Errors.E030.format(row=row, detail=f"CSV: {exc}"), row=row))
            continue
        row += 1
        bad = next((v for v in record.values() if isinstance(v, str) and _has_surrogates(v)), None)
        if bad is not None:
            yield NumberedRecord(row, InputError(Errors.E033.format(row=row, encoding="UTF-8", detail="invalid byte sequence"), row=row))
            continue
        if None in record:  # more fields than the header names
            record.pop(None)
        yield NumberedRecord(row, {k: v for k, v in record.items() if k is not None and v not in (None, "")})


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def read_requests(path: str | Path, fmt: str | None = None) -> Iterator[NumberedRecord]:
    """Records from a file, or from standard input when ``path`` is ``-``.

    The format and the file's existence are checked at once (not on first
    iteration), so a missing file is an :class:`InputError` before any output.
    """
    fmt = detect_format(path, fmt)
    if str(path) == "-":
        stream: BinaryIO = sys.stdin.buffer
        return read_csv(stream) if fmt == "csv" else read_jsonl(stream)
    p = Path(path)
    if not p.is_file():
        raise InputError(Errors.E041.format(path=p))
    return _read_file(p, fmt)


def _read_file(p: Path, fmt: str) -> Iterator[NumberedRecord]:
    with open(p, "rb") as stream:
        yield from (read_csv(stream) if fmt == "csv" else read_jsonl(stream))


CSV_COLUMNS = ("id", "category", "scope", "clauses", "severity", "response_time_hours", "missing_info",
               "delay_reasons", "flags", "confidence", "needs_review", "suggested_reply", "explanation", "error")


def csv_row(result: Result) -> dict[str, Any]:
    """One flat CSV row: lists joined by ';', explanation as JSON, error as its message."""
    d = result.to_dict()
    if "error" in d:
        return {"id": d["id"], "error": f"row {d['error']['row']}: {d['error']['message']}"}
    return {
        **{k: d[k] for k in ("id", "category", "scope", "severity", "response_time_hours", "confidence",
                             "needs_review", "suggested_reply")},
        "clauses": ";".join(c["id"] for c in d["clauses"]),
        "missing_info": ";".join(d["missing_info"]),
        "delay_reasons": ";".join(d["delay_reasons"]),
        "flags": ";".join(d["flags"]),
        "explanation": json.dumps(d["explanation"], ensure_ascii=False),
    }


def write_results(results: Iterable[Result], out: TextIO, fmt: str = "jsonl") -> Iterator[Result]:
    """Write each result as it comes and pass it on (for progress and the summary)."""
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in results:
            writer.writerow({k: _SURROGATE.sub("\ufffd", v) if isinstance(v, str) else v for k, v in csv_row(r).items()})
            yield r
    else:
        for r in results:
            line = json.dumps(r.to_dict(), ensure_ascii=False)
            if _SURROGATE.search(line):  # a lone surrogate (an id of "\ud800") cannot be written as UTF-8
                line = json.dumps(r.to_dict())
            out.write(line + "\n")
            yield r


_SURROGATE = re.compile("[\ud800-\udfff]")
