"""Batch input and output: JSONL, CSV or Parquet in and out, row by row.

Reading never stops at a bad row: a line that is not JSON, not an object, not
UTF-8 or too long becomes an :class:`InputError` in the stream at its place, so
the classifier reports it with its row number and goes on. JSONL rows are
numbered by line; CSV rows by record (the first row after the header is 1).
Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r``; a file that starts with a UTF-16
or UTF-32 byte-order mark is read in that encoding. A line is read up to
:data:`MAX_LINE_BYTES` and no further. A CSV quote that is never closed is
reported (E038) and the lines it took in are read again as rows.

Writing never destroys an output: :class:`OutputFile` writes a new file beside
the target and renames it into place when the run ends, or (resume) appends to
the existing file and knows which rows it already holds. Parquet (:mod:`.parquet`) is
read and written in row groups; a Parquet output is always written anew and renamed.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import secrets
import stat
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, NamedTuple

from .errors import Errors, InputError, IntakeError
from .request import NumberedRecord, shown_in_message
from .result import Result

FORMATS = ("jsonl", "csv", "parquet")
#: Longest line read (JSONL and CSV); longer lines are reported, not parsed, and never held whole.
MAX_LINE_BYTES = 16 * 1024 * 1024
csv.field_size_limit(MAX_LINE_BYTES)
#: Bytes read at a time.
_CHUNK = 64 * 1024
#: Byte-order marks and the codec each announces (UTF-32 first: its little-endian mark starts like UTF-16's).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, None),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def detect_format(path: str | Path | None, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(Errors.E040.format(fmt=fmt, allowed=", ".join(FORMATS)))
        return fmt
    suffix = Path(path).suffix.lower() if path is not None and str(path) != "-" else ""
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "jsonl"


# -- reading bytes ---------------------------------------------------------------------
class _Prefixed:
    """A byte stream with the bytes already read from it put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._read = getattr(stream, "read1", stream.read)

    def read1(self, size: int) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._read(size)


class _Transcoded:
    """A UTF-16 or UTF-32 byte stream read as UTF-8 (a unit that does not decode becomes U+FFFD)."""

    def __init__(self, stream: _Prefixed, codec: str) -> None:
        self._read = stream.read1
        self._decoder = codecs.getincrementaldecoder(codec)("replace")

    def read1(self, size: int) -> bytes:
        while True:
            chunk = self._read(size)
            text = self._decoder.decode(chunk, final=not chunk)
            if text or not chunk:
                return text.encode("utf-8")


def _decoded(stream: BinaryIO) -> _Prefixed | _Transcoded:
    """The stream as UTF-8 bytes, its byte-order mark (if any) taken off."""
    head = stream.read(4)
    for bom, codec in _BOMS:
        if head.startswith(bom):
            rest = _Prefixed(head[len(bom):], stream)
            return rest if codec is None else _Transcoded(rest, codec)
    return _Prefixed(head, stream)


def _lines(stream: _Prefixed | _Transcoded) -> Iterator[bytes | int]:
    """The lines of a byte stream with their ends (``\\n``, ``\\r\\n`` or a lone ``\\r``). A line
    over MAX_LINE_BYTES is skipped as it is read, never held whole: its length in bytes comes
    instead of it."""
    limit = MAX_LINE_BYTES
    head: list[bytes] = []  # the start of a line not ended yet (dropped once it is over the limit)
    size = 0                # the length of that line so far
    cr = False              # the line so far ends with \r: it is whole, but a \n may follow
    while chunk := stream.read1(_CHUNK):
        if cr:
            if chunk[:1] == b"\n":
                head.append(b"\n")
                size += 1
                chunk = chunk[1:]
            yield b"".join(head) if size <= limit else size
            head, size, cr = [], 0, False
            if not chunk:
                continue
        pieces = chunk.splitlines(keepends=True)
        last = pieces.pop() if not pieces[-1].endswith(b"\n") else None
        for piece in pieces:
            if size:
                size += len(piece)
                yield b"".join(head) + piece if size <= limit else size
                head, size = [], 0
            else:
                yield piece if len(piece) <= limit else len(piece)
        if last is not None:
            size += len(last)
            if size <= limit:
                head.append(last)
            else:
                head = []
            cr = last.endswith(b"\r")
    if size:
        yield b"".join(head) if size <= limit else size


# -- JSONL -----------------------------------------------------------------------------
def read_jsonl(stream: BinaryIO) -> Iterator[NumberedRecord]:
    """Records of a JSON Lines byte stream; blank lines are skipped (their numbers kept)."""
    for row, raw in enumerate(_lines(_decoded(stream)), 1):
        if isinstance(raw, int):
            yield NumberedRecord(row, InputError(Errors.E035.format(row=row, size=raw, limit=MAX_LINE_BYTES), row=row))
            continue
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


# -- CSV -------------------------------------------------------------------------------
class _LineTooLong(Exception):
    def __init__(self, line: int, size: int) -> None:
        super().__init__(line, size)
        self.line, self.size = line, size


class _RecordLines:
    """Text lines for :func:`csv.reader`, numbered; the lines of the record being read are
    kept, so that they can be read again."""

    def __init__(self, lines: Iterator[bytes | int]) -> None:
        self._lines = lines
        self._again: deque[tuple[int, str]] = deque()
        self._read = 0
        #: (line number, text) of each line of the record being read
        self.record: list[tuple[int, str]] = []

    def __iter__(self) -> "_RecordLines":
        return self

    def __next__(self) -> str:
        if self._again:
            number, text = self._again.popleft()
        else:
            raw = next(self._lines)
            self._read += 1
            number = self._read
            if isinstance(raw, int):
                raise _LineTooLong(number, raw)
            text = raw.decode("utf-8", "surrogateescape")  # undecodable bytes fail their row (E033)
        self.record.append((number, text))
        return text

    def read_again(self, lines: list[tuple[int, str]]) -> None:
        self._again.extendleft(reversed(lines))


def read_csv(stream: BinaryIO) -> Iterator[NumberedRecord]:
    """Records of a CSV byte stream with a header row; undecodable bytes or a mis-quoted
    record fail only their row (E033, E037), and a quoted field that swallows the lines
    after it is reported (E038) and those lines are read again."""
    lines = _RecordLines(_lines(_decoded(stream)))
    reader = csv.reader(lines, strict=True)  # strict: a truncated or mis-quoted record is an error row
    header: list[str] | None = None
    row = 0
    while True:
        lines.record = []
        try:
            fields = next(reader)
        except StopIteration:
            return
        except (csv.Error, _LineTooLong) as exc:
            reader = csv.reader(lines, strict=True)  # a fresh reader: the failed one may be mid-field
            if header is None:
                raise InputError(Errors.E037.format(row=0, line=lines.record[0][0] if lines.record else 1,
                                                    detail=f"the header: {exc}")) from None
            row += 1
            yield NumberedRecord(row, _csv_error(exc, row, header, lines))
            continue
        if not fields:  # a blank line
            continue
        if header is None:
            header = fields
            continue
        row += 1
        if any(_has_surrogates(v) for v in fields):
            message = Errors.E033.format(row=row, encoding="UTF-8", detail="invalid byte sequence")
            yield NumberedRecord(row, InputError(message, row=row))
            continue
        # as csv.DictReader: fields beyond the header are dropped; empty cells are left out
        yield NumberedRecord(row, {k: v for k, v in dict(zip(header, fields)).items() if v != ""})


def _csv_error(exc: Exception, row: int, header: list[str], lines: _RecordLines) -> InputError:
    """The error of a CSV record that could not be read. When it took in more than its first
    line (a quote opened and not closed), the lines after the first are read again."""
    if isinstance(exc, _LineTooLong):
        return InputError(Errors.E035.format(row=row, size=exc.size, limit=MAX_LINE_BYTES), row=row)
    first, text = lines.record[0]
    rid = _csv_id(text, header)
    detail = "a quoted field is never closed" if str(exc) == "unexpected end of data" else str(exc)
    if len(lines.record) == 1:
        return InputError(Errors.E037.format(row=row, line=first, detail=detail), row=row, request_id=rid)
    taken = lines.record[1:]
    lines.read_again(taken)
    end = "is never closed" if str(exc) == "unexpected end of data" else f"ends on line {taken[-1][0]} ({detail})"
    return InputError(Errors.E038.format(row=row, line=first, end=end, lines=len(taken),
                                         chars=sum(len(t) for _, t in taken)), row=row, request_id=rid)


def _csv_id(line: str, header: list[str]) -> str | None:
    """The id on the first line of a record that could not be read, when it is there whole."""
    if "id" not in header:
        return None
    fields = next(csv.reader([line]), [])  # not strict: the rest of the line may be broken
    i = header.index("id")
    value = fields[i] if i < len(fields) else ""
    return value if value and not re.search(r"[\r\n]", value) and not _has_surrogates(value) else None


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


# -- files -----------------------------------------------------------------------------
def _kind(mode: int) -> str:
    """What a file that is not a regular file is, for messages."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_requests(path: str | Path, fmt: str | None = None) -> Iterator[NumberedRecord]:
    """Records from a file, or from standard input when ``path`` is ``-``.

    The format and the file are checked at once (not on first iteration), so a
    missing file, a directory or one that cannot be opened is an
    :class:`InputError` before any output. A named pipe or a device (``/dev/null``:
    no rows) is read like standard input.
    """
    fmt = detect_format(path, fmt)
    if str(path) == "-":
        if fmt == "parquet":  # its footer, at the end, says where the rows are
            raise InputError(Errors.E047.format(path="standard input", reason="Parquet is read from a file, not a stream"))
        return _read(sys.stdin.buffer, fmt, "standard input")
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InputError(Errors.E041.format(path=p)) from None
    except OSError as exc:
        raise InputError(Errors.E047.format(path=p, reason=exc.strerror or exc)) from None
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        raise InputError(Errors.E042.format(path=p, kind=_kind(mode)))
    if fmt == "parquet":
        from .parquet import read_parquet

        return read_parquet(p)
    try:
        stream = open(p, "rb")
    except OSError as exc:
        raise InputError(Errors.E047.format(path=p, reason=exc.strerror or exc)) from None
    return _read(stream, fmt, p, close=True)


def _read(stream: BinaryIO, fmt: str, name: str | Path, close: bool = False) -> Iterator[NumberedRecord]:
    try:
        yield from (read_csv(stream) if fmt == "csv" else read_jsonl(stream))
    except OSError as exc:  # a read error (EIO, a device gone) stops the run with a message
        raise InputError(Errors.E047.format(path=name, reason=exc.strerror or exc)) from None
    finally:
        if close:
            stream.close()


# -- writing ---------------------------------------------------------------------------
CSV_COLUMNS = ("id", "category", "scope", "clauses", "severity", "response_time_hours", "missing_info",
               "delay_reasons", "flags", "confidence", "needs_review", "language", "suggested_reply", "explanation",
               "error")
#: The columns of a Parquet output and of a Spark result, with their types: the CSV columns,
#: the lists typed as lists of strings (``clauses`` as the clause ids).
TABLE_COLUMNS = (("id", "string"), ("category", "string"), ("scope", "string"), ("clauses", "list<string>"),
                 ("severity", "string"), ("response_time_hours", "int32"), ("missing_info", "list<string>"),
                 ("delay_reasons", "list<string>"), ("flags", "list<string>"), ("confidence", "double"),
                 ("needs_review", "bool"), ("language", "string"), ("suggested_reply", "string"),
                 ("explanation", "string"), ("error", "string"))
_LISTS = ("missing_info", "delay_reasons", "flags")


def table_columns(include_text: bool = False) -> tuple[tuple[str, str], ...]:
    """:data:`TABLE_COLUMNS`, and ``text`` (the masked request) when asked for."""
    return TABLE_COLUMNS + ((("text", "string"),) if include_text else ())


def csv_row(result: Result) -> dict[str, Any]:
    """One flat CSV row: lists joined by ';', explanation as JSON, error as its message."""
    d = result.to_dict()
    if "error" in d:
        return {"id": d["id"], "error": f"row {d['error']['row']}: {d['error']['message']}"}
    return {
        **{k: d[k] for k in ("id", "category", "scope", "severity", "response_time_hours", "confidence",
                             "needs_review", "language", "suggested_reply")},
        "clauses": ";".join(c["id"] for c in d["clauses"]),
        "missing_info": ";".join(d["missing_info"]),
        "delay_reasons": ";".join(d["delay_reasons"]),
        "flags": ";".join(d["flags"]),
        "explanation": json.dumps(d["explanation"], ensure_ascii=False),
        **({"text": d["text"]} if "text" in d else {}),
    }


def table_row(result: Result) -> dict[str, Any]:
    """One typed row (:data:`TABLE_COLUMNS`) for Parquet and Spark: lists as lists,
    explanation as JSON text, error as ``row N: message``; an error row has only ``id``
    and ``error``. A lone surrogate, which UTF-8 has no form for, becomes U+FFFD."""
    d = result.to_dict()
    if "error" in d:
        row = {"id": d["id"], "error": f"row {d['error']['row']}: {d['error']['message']}"}
    else:
        row = {
            **{k: d[k] for k in ("id", "category", "scope", "severity", "response_time_hours", "confidence",
                                 "needs_review", "language", "suggested_reply")},
            "clauses": [c["id"] for c in d["clauses"]],
            **{k: list(d[k]) for k in _LISTS},
            "explanation": json.dumps(d["explanation"], ensure_ascii=False),
            **({"text": d["text"]} if "text" in d else {}),
        }
    for key, value in row.items():
        if isinstance(value, str):
            row[key] = _SURROGATE.sub("\ufffd", value)
        elif isinstance(value, list):
            row[key] = [_SURROGATE.sub("\ufffd", v) for v in value]
    return row


def _json_line(result: Result) -> str:
    line = json.dumps(result.to_dict(), ensure_ascii=False)
    if _SURROGATE.search(line):  # a lone surrogate (an id of "\ud800") cannot be written as UTF-8
        line = json.dumps(result.to_dict())
    return line


def _csv_cells(result: Result) -> dict[str, Any]:
    return {k: _SURROGATE.sub("\ufffd", v) if isinstance(v, str) else v for k, v in csv_row(result).items()}


def _unwritable(result: Result, fmt: str, exc: Exception) -> Result:
    """The error row written in place of a result that cannot be written (E046)."""
    row = result.row if result.row is not None else "?"
    detail = shown_in_message(f"{type(exc).__name__}: {exc}", 200)
    return Result(id=result.id, row=result.row,
                  error={"row": row, "field": None, "message": Errors.E046.format(row=row, fmt=fmt, detail=detail)})


class Encoded(NamedTuple):
    """A result in its output format, ready to write, and the result itself (after
    an :class:`Encoder` in a worker process, only what progress and the summary need of it)."""

    result: Result
    #: a JSONL or CSV line, or a Parquet row
    data: str | dict[str, Any]


class Encoder:
    """Turns results into :class:`Encoded` rows of one output format. A result that cannot be
    written becomes its row's error (E046). Picklable, so worker processes encode what they
    classify and hand over only text."""

    def __init__(self, fmt: str, include_text: bool = False) -> None:
        self.fmt = fmt
        self.include_text = include_text
        self._columns = CSV_COLUMNS + (("text",) if include_text else ())
        self._buffer: io.StringIO | None = None
        self._csv: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"fmt": self.fmt, "include_text": self.include_text}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["fmt"], state["include_text"])

    def header(self) -> str:
        """The CSV header line ('' for other formats)."""
        return self._csv_line(self._columns) if self.fmt == "csv" else ""

    def __call__(self, result: Result) -> Encoded:
        name = {"csv": "CSV", "parquet": "Parquet"}.get(self.fmt, "JSON")
        try:
            return Encoded(result, self._data(result))
        except (TypeError, ValueError) as exc:  # a value the format has no form for
            result = _unwritable(result, name, exc)
            return Encoded(result, self._data(result))

    def _data(self, result: Result) -> str | dict[str, Any]:
        if self.fmt == "parquet":
            return table_row(result)
        if self.fmt == "csv":
            cells = _csv_cells(result)
            return self._csv_line([cells.get(k, "") for k in self._columns])
        return _json_line(result) + "\n"

    def _csv_line(self, fields: Iterable[Any]) -> str:
        """One CSV record as csv.DictWriter writes it (quoting as needed, ending in \\r\\n)."""
        if self._buffer is None:
            self._buffer = io.StringIO()
            self._csv = csv.writer(self._buffer)
        self._buffer.seek(0)
        self._buffer.truncate()
        self._csv.writerow(fields)
        return self._buffer.getvalue()


def write_results(results: Iterable[Result | Encoded], out: Any, fmt: str = "jsonl", *,
                  header: bool = True, include_text: bool = False) -> Iterator[Result]:
    """Write each result as it comes and pass it on (for progress and the summary). Results
    may come already encoded (:class:`Encoded`, from worker processes). A result that cannot
    be written becomes its row's error (E046); ``header=False`` leaves out the CSV header
    (when appending); ``include_text`` adds the column ``text``. ``out`` is a text stream,
    or for Parquet a :class:`classifier.parquet.ParquetRows`."""
    encoder = Encoder(fmt, include_text)
    if header and fmt == "csv":
        out.write(encoder.header())
    write = out.write_row if fmt == "parquet" else out.write
    for item in results:
        encoded = item if isinstance(item, Encoded) else encoder(item)
        write(encoded.data)
        yield encoded.result


_SURROGATE = re.compile("[\ud800-\udfff]")


# -- output files ----------------------------------------------------------------------
@dataclass
class Done:
    """The rows an output file already holds: their ids, and the row numbers of error rows
    without an id (a line that could not be read)."""

    ids: set[str] = field(default_factory=set)
    rows: set[int] = field(default_factory=set)
    #: rows in the file
    count: int = 0
    #: bytes of a last row cut off (by a crash or a full disk), removed from the file
    cut: int = 0
    #: records passed over by :meth:`skip`
    skipped: int = 0

    def __contains__(self, record: NumberedRecord) -> bool:
        """Whether a record's result is in the file, by the id classify_many gives it."""
        row, rec = record
        if isinstance(rec, InputError):
            return rec.request_id in self.ids if rec.request_id else row in self.rows
        rid = rec.get("id") if isinstance(rec, dict) else None
        if rid is None or rid == "":
            return str(row) in self.ids
        if isinstance(rid, (str, int)) and not isinstance(rid, bool):
            return str(rid) in self.ids
        return row in self.rows

    def skip(self, records: Iterable[NumberedRecord]) -> Iterator[NumberedRecord]:
        """The records whose results are not in the file yet."""
        for record in records:
            if record in self:
                self.skipped += 1
            else:
                yield record

    def add(self, rid: Any, error: Any) -> None:
        self.count += 1
        if rid not in (None, ""):
            self.ids.add(str(rid))
        elif isinstance(error, dict) and isinstance(error.get("row"), int):
            self.rows.add(error["row"])
        elif isinstance(error, str) and (m := re.match(r"row (\d+):", error)):
            self.rows.add(int(m.group(1)))


class OutputFile:
    """The ``--output`` of a batch, written so that no run destroys what is there.

    A new file, or one replaced with ``overwrite``, is written beside the target
    under a temporary name and renamed over it by :meth:`commit`; if the run fails,
    :meth:`fail` removes it and the target stays as it was. With ``resume`` the file
    is appended to as rows come (so a run that stops can be resumed again), and
    :attr:`done` holds the rows already in it; a last row cut off by a crash or a
    full disk is removed first. A device or pipe (``/dev/null``, a FIFO) is written
    directly. An existing non-empty file is never replaced without ``overwrite`` (E043).

    A Parquet file cannot be appended to: with ``resume`` its rows are copied into the
    new file first, and :attr:`stream` is a :class:`classifier.parquet.ParquetRows`
    (``include_text`` adds its column ``text``).
    """

    def __init__(self, path: str | Path, fmt: str, *, resume: bool = False, overwrite: bool = False,
                 include_text: bool = False) -> None:
        self.path = Path(path)
        self.fmt = fmt
        self.done = Done()
        #: whether the CSV header is to be written (not when appending to rows)
        self.header = True
        self._temp: Path | None = None
        self._existed = False
        self._appending = resume and fmt != "parquet"
        self._include_text = include_text
        if fmt == "parquet":
            from .parquet import _pyarrow

            _pyarrow()  # the extra is there, before any file is made
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise self._error(exc, "nothing was written") from None
        if st is not None and not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode) or resume:
                raise IntakeError(Errors.E044.format(
                    path=self.path, reason=f"it is {_kind(st.st_mode)}",
                    state="--resume needs a regular file" if resume else "give the name of a file"))
            self._appending = False
            self.stream = self._rows_on(self._open(lambda: open(self.path, "w", encoding="utf-8", newline="")
                                                   if fmt != "parquet" else open(self.path, "wb")))
            return
        self._existed = st is not None and st.st_size > 0
        if self._existed and not (resume or overwrite):
            raise IntakeError(Errors.E043.format(path=self.path))
        if self._existed and not os.access(self.path, os.W_OK):
            raise IntakeError(Errors.E044.format(path=self.path, reason="the file is read-only",
                                                 state="it is unchanged"))
        keep = None
        if resume and fmt == "parquet" and self._existed:
            from .parquet import rows_in

            rows_in(self.path, self.done)
            keep = self.path
        elif resume and fmt != "parquet":
            if st is not None:
                self.done = _rows_in(self.path, fmt)
                self.header = self.path.stat().st_size == 0
            self.stream = self._open(lambda: open(self.path, "a", encoding="utf-8", newline=""))
            return
        self._temp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.part")
        # created as open() creates files (mode 0o666 less the umask), or with the mode of the file it replaces
        fd = self._open(lambda: os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        if st is not None:
            os.chmod(fd, stat.S_IMODE(st.st_mode))
        try:
            self.stream = self._rows_on(open(fd, "w", encoding="utf-8", newline="") if fmt != "parquet"
                                        else open(fd, "wb"), keep)
        except BaseException:
            self._temp.unlink(missing_ok=True)
            raise

    def _rows_on(self, stream: Any, keep: Path | None = None) -> Any:
        """The stream results are written to: the file itself, or Parquet rows on it."""
        if self.fmt != "parquet":
            return stream
        from .parquet import ParquetRows

        try:
            return ParquetRows(stream, include_text=self._include_text, keep=keep)
        except OSError as exc:
            stream.close()
            raise self._error(exc, "nothing was written") from None

    def _open(self, opener: Any) -> Any:
        try:
            return opener()
        except OSError as exc:
            raise self._error(exc, "nothing was written") from None

    def _error(self, exc: OSError, state: str) -> IntakeError:
        return IntakeError(Errors.E044.format(path=self.path, reason=exc.strerror or exc, state=state))

    def commit(self) -> None:
        """Finish the file: flush it to disk and, when written beside the target, rename it into place."""
        sync = self._temp is not None or self._appending
        if self.fmt == "parquet":
            self.stream.close(sync=sync)
        else:
            self.stream.flush()
            if sync:
                os.fsync(self.stream.fileno())
            self.stream.close()
        if self._temp is not None:
            os.replace(self._temp, self.path)
            self._temp = None

    def discard(self) -> str:
        """Undo what a run that failed wrote, as far as it can be; says what state the output is in."""
        try:
            self.stream.close()
        except Exception:  # noqa: BLE001 - the flush of a full disk fails again; the file is dealt with below
            pass
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
            self._temp = None
            return "the previous file is unchanged" if self._existed else "nothing was written"
        if self._appending:
            try:
                kept = _rows_in(self.path, self.fmt).count
            except IntakeError:
                return "run again with --resume to add the rest"
            return f"its {kept} whole rows are kept; run again with --resume to add the rest"
        return "the output is incomplete"

    def fail(self, exc: OSError) -> IntakeError:
        """The error that ends a run whose output could not be written (the output discarded first)."""
        return self._error(exc, self.discard())


def _rows_in(path: Path, fmt: str) -> Done:
    """The rows already in an output file of intake's. A last row cut off (the file does not
    end with a line end, or a CSV quote is open at its end) is removed, so the file ends with
    a whole row; anything else that is not intake's output is refused (E045)."""
    done = Done()
    try:
        with open(path, "rb") as f:
            lines = _lines(_Prefixed(b"", f))
            whole = _csv_rows_in(lines, path, done) if fmt == "csv" else _jsonl_rows_in(lines, path, done)
            size = f.seek(0, os.SEEK_END)
        if size > whole:
            os.truncate(path, whole)
            done.cut = size - whole
    except OSError as exc:
        raise IntakeError(Errors.E045.format(path=path, problem=exc.strerror or exc)) from None
    return done


def _whole(raw: bytes | int, lines: Iterator[bytes | int], path: Path, number: int) -> bool:
    """Whether a line of an output file is whole; False for a last line cut off."""
    if isinstance(raw, bytes) and raw.endswith(b"\n"):
        return True
    if next(lines, None) is None:
        return False
    raise IntakeError(Errors.E045.format(path=path, problem=f"line {number} is not a row intake wrote"))


def _jsonl_rows_in(lines: Iterator[bytes | int], path: Path, done: Done) -> int:
    whole = 0  # bytes up to the end of the last whole row
    for number, raw in enumerate(lines, 1):
        if not _whole(raw, lines, path, number):
            break
        if raw.strip():
            try:
                d = json.loads(raw)
            except ValueError:
                d = None
            if not isinstance(d, dict) or "id" not in d:
                raise IntakeError(Errors.E045.format(path=path, problem=f"line {number} is not a result of intake"))
            done.add(d["id"], d.get("error"))
        whole += len(raw)
    return whole


def _csv_rows_in(lines: Iterator[bytes | int], path: Path, done: Done) -> int:
    ends = [0]  # where each line handed to the reader ends

    def text() -> Iterator[str]:
        for number, raw in enumerate(lines, 1):
            if not _whole(raw, lines, path, number):
                return
            ends.append(ends[-1] + len(raw))
            yield raw.decode("utf-8", "replace")

    reader = csv.reader(text(), strict=True)
    whole, header = 0, True
    try:
        for fields in reader:
            if header:
                if fields not in (list(CSV_COLUMNS), [*CSV_COLUMNS, "text"]):
                    raise IntakeError(Errors.E045.format(path=path,
                                                         problem="its first line is not the CSV header intake writes"))
                header = False
            elif fields:
                cells = dict(zip(CSV_COLUMNS, fields))
                done.add(cells.get("id"), cells.get("error") or None)
            whole = ends[-1]
    except csv.Error as exc:
        if str(exc) != "unexpected end of data":  # else: the last row is cut off inside a quoted field
            problem = f"line {reader.line_num} is not valid CSV ({exc})"
            raise IntakeError(Errors.E045.format(path=path, problem=problem)) from None
    return whole
