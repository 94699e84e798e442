"""Parquet in and out (the ``parquet`` extra: pyarrow), a row group at a time.

Requests are read with :meth:`pyarrow.parquet.ParquetFile.iter_batches` and results
written with :class:`pyarrow.parquet.ParquetWriter` in row groups of
:data:`ROWS_PER_GROUP`, so memory stays flat however large the file. Rows are numbered
from 1 in file order. The result columns are :data:`classifier.batch.TABLE_COLUMNS`:
list fields as ``list<string>``, ``explanation`` as JSON text and ``error`` as
``row N: message``, as the CSV writer writes them; a Spark result has the same columns.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from .errors import Errors, InputError, IntakeError
from .request import NumberedRecord

#: Results per row group written (and rows read at a time). A results row is about 2.5 KB
#: before compression; 2,000 of them held as Python objects and converted to Arrow cost
#: about 30 MB at the peak, 10,000 about 90 MB.
ROWS_PER_GROUP = 2_000


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise IntakeError(Errors.E048.format(what="Parquet", extra="parquet", module="pyarrow")) from None
    return pa, pq


def arrow_schema(include_text: bool = False) -> Any:
    """The Arrow schema of a results file (with the column ``text`` when asked for)."""
    from .batch import table_columns

    pa, _ = _pyarrow()
    types = {"string": pa.string(), "list<string>": pa.list_(pa.string()), "int32": pa.int32(),
             "double": pa.float64(), "bool": pa.bool_()}
    return pa.schema([(name, types[kind]) for name, kind in table_columns(include_text)])


def row_count(path: str | Path) -> int | None:
    """Rows in a Parquet file by its footer (for the progress bar); None when it cannot be read."""
    _, pq = _pyarrow()
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - reading it will report what is wrong
        return None


def read_parquet(path: Path) -> Iterator[NumberedRecord]:
    """Records of a Parquet file, a batch of rows at a time. A null cell is left out (as an
    empty CSV cell is); a column the label contract does not know is ignored. A file that is
    not Parquet is an :class:`InputError` before any row (E047)."""
    _, pq = _pyarrow()
    try:
        # no pre-buffering and one thread: with either, memory grew with the file (by about 100 MB
        # over 400,000 rows), and reading is not what takes the time
        source = pq.ParquetFile(path, pre_buffer=False)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, …
        raise InputError(Errors.E047.format(path=path, reason=f"not a Parquet file ({exc})")) from None
    return _records(source, path)


def _records(source: Any, path: Path) -> Iterator[NumberedRecord]:
    from .request import Request

    known = set(Request.__dataclass_fields__)
    columns = [name for name in source.schema_arrow.names if name in known]
    row = 0
    try:
        for batch in source.iter_batches(batch_size=ROWS_PER_GROUP, columns=columns, use_threads=False):
            for record in batch.to_pylist():
                row += 1
                yield NumberedRecord(row, {k: v for k, v in record.items() if v is not None and not _nan(v)})
    except OSError as exc:
        raise InputError(Errors.E047.format(path=path, reason=exc.strerror or exc)) from None
    except Exception as exc:  # noqa: BLE001 - a damaged page: the rows before it are classified
        raise InputError(Errors.E047.format(path=path, reason=f"after row {row}: {exc}")) from None
    finally:
        source.close()


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


class ParquetRows:
    """Rows written to a Parquet stream in row groups; :meth:`close` writes the footer.

    ``keep`` names an earlier results file whose rows are copied in first (``--resume``:
    a Parquet file cannot be appended to, so it is written anew beside the old one)."""

    def __init__(self, stream: BinaryIO, *, include_text: bool = False, keep: Path | None = None) -> None:
        pa, pq = _pyarrow()
        self._pa = pa
        self._stream = stream
        self._schema = arrow_schema(include_text)
        self._writer = pq.ParquetWriter(stream, self._schema, compression="zstd")
        self._rows: list[dict[str, Any]] = []
        if keep is not None:
            for batch in pq.ParquetFile(keep, pre_buffer=False).iter_batches(batch_size=ROWS_PER_GROUP,
                                                                            use_threads=False):
                self._writer.write_table(pa.Table.from_batches([batch]).select(self._schema.names)
                                         .cast(self._schema))

    def write_row(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= ROWS_PER_GROUP:
            self.flush()

    def flush(self) -> None:
        """Write the rows held as a row group (and flush the file)."""
        if self._rows:
            self._writer.write_table(self._pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []
        self._stream.flush()

    def close(self, sync: bool = False) -> None:
        """Write what is held and the footer, then close the file (``sync``: on disk first)."""
        try:
            self.flush()
            self._writer.close()
            if sync and not self._stream.closed:
                self._stream.flush()
                os.fsync(self._stream.fileno())
        finally:
            self._stream.close()


def rows_in(path: Path, done: Any) -> None:
    """Add the rows of an earlier Parquet results file to ``done`` (a :class:`classifier.batch.Done`,
    for ``--resume``); a file intake did not write is refused (E045)."""
    _, pq = _pyarrow()
    try:
        source = pq.ParquetFile(path, pre_buffer=False)
        names = source.schema_arrow.names
        if "id" not in names or "error" not in names:
            raise IntakeError(Errors.E045.format(path=path, problem="it is not a results file of intake "
                                                                    "(it has no columns id and error)"))
        for batch in source.iter_batches(batch_size=ROWS_PER_GROUP, columns=["id", "error"], use_threads=False):
            for rid, error in zip(batch.column("id").to_pylist(), batch.column("error").to_pylist()):
                done.add(rid, error)
    except IntakeError:
        raise
    except Exception as exc:  # noqa: BLE001 - not Parquet, or damaged
        raise IntakeError(Errors.E045.format(path=path, problem=f"it cannot be read as Parquet ({exc})")) from None
