"""Classify requests on a Spark cluster (the ``spark`` extra: pyspark, pandas, pyarrow).

:func:`classify_dataframe` maps each partition through ``mapInPandas``: every Python
worker loads the Classifier once and keeps it for every task it runs; the result is a
DataFrame with the typed columns of a Parquet output of ``intake classify``
(:data:`classifier.batch.TABLE_COLUMNS`). Run as a file, this module is an entry for
``spark-submit`` that classifies Parquet or JSON Lines paths::

    spark-submit "$(python -c 'import classifier.spark as s; print(s.__file__)')" \\
        --input s3a://lake/tickets/ --output s3a://lake/intake-results/

Spark has no row order across partitions: an error's row number counts rows within
its partition, and a request without an ``id`` keeps a null ``id``. Give every request
an id to join the results back to the tickets.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a file, its folder comes first on sys.path and would shadow top-level modules
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]

import argparse  # noqa: E402
import math  # noqa: E402
from functools import partial  # noqa: E402
from typing import Any, Iterator, NamedTuple  # noqa: E402

from classifier import batch  # noqa: E402  (absolute imports: this file is also run as a script)
from classifier.request import NumberedRecord  # noqa: E402

#: The request fields (SPEC §1) read from a DataFrame; other columns are left out.
REQUEST_COLUMNS = ("id", "text", "subject", "channel", "attachments", "product", "language")
#: Spark SQL type of each kind of column in :data:`classifier.batch.TABLE_COLUMNS`.
SPARK_TYPES = {"string": "string", "list<string>": "array<string>", "int32": "int", "double": "double",
               "bool": "boolean"}


def result_schema(include_text: bool = False) -> str:
    """The result columns as a Spark DDL schema string (``id string, category string, …``)."""
    return ", ".join(f"{name} {SPARK_TYPES[kind]}" for name, kind in batch.table_columns(include_text))


class _Settings(NamedTuple):
    model_dir: str | None
    rules_dir: str | None
    use_model: bool
    include_text: bool


def classify_dataframe(df: Any, *, text_col: str = "text", model_dir: str | Path | None = None,
                       rules_dir: str | Path | None = None, use_model: bool = True,
                       include_text: bool = False) -> Any:
    """A DataFrame of results, one row per row of ``df``, with the columns of
    :func:`result_schema`. ``df`` holds the request fields (``text_col`` is the text; ``id``,
    ``subject``, ``channel``, ``attachments``, ``product``, ``language`` when present).
    ``model_dir`` and ``rules_dir`` are folders on every worker (default: the bundled
    model and rules of the installed package); ``include_text`` adds the column ``text``
    with the request's text, secrets masked. Lazy, as Spark is: nothing runs until the
    result is written or collected."""
    from pyspark.sql import functions as F

    if text_col not in df.columns:
        raise ValueError(f"the DataFrame has no column {text_col!r} with the request text; "
                         f"its columns are {', '.join(df.columns)}")
    if text_col != "text":
        df = df.drop(*[c for c in df.columns if c == "text"]).withColumnRenamed(text_col, "text")
    # an integer id column with nulls would reach pandas as floats: as text it is what the CLI makes of it
    columns = [F.col(c).cast("string").alias(c) if c == "id" else F.col(c) for c in REQUEST_COLUMNS if c in df.columns]
    settings = _Settings(None if model_dir is None else str(model_dir), None if rules_dir is None else str(rules_dir),
                         use_model, include_text)
    return df.select(*columns).mapInPandas(partial(_classify_batches, settings=settings),
                                           schema=result_schema(include_text))


# -- in the Python workers -------------------------------------------------------------
_loaded: dict[_Settings, Any] = {}


def _classifier(settings: _Settings) -> Any:
    """The Classifier of these settings, loaded once per Python worker process."""
    clf = _loaded.get(settings)
    if clf is None:
        from classifier.classify import Classifier

        clf = _loaded[settings] = Classifier.load(settings.model_dir, rules_dir=settings.rules_dir,
                                                  use_model=settings.use_model)
    return clf


def _classify_batches(batches: Iterator[Any], settings: _Settings) -> Iterator[Any]:
    """mapInPandas: pandas DataFrames of requests in, of results out."""
    import pandas as pd

    clf = _classifier(settings)
    names = [name for name, _ in batch.table_columns(settings.include_text)]
    row = 0
    for frame in batches:
        records, without_id = [], set()
        for record in frame.to_dict("records"):
            row += 1
            fields = {k: _plain(v) for k, v in record.items() if not _missing(v)}
            if fields.get("id") in (None, ""):
                without_id.add(row)
            records.append(NumberedRecord(row, fields))
        rows = []
        for result in clf.classify_many(records, include_text=settings.include_text):
            cells = batch.table_row(result)
            if result.row in without_id:
                cells["id"] = None
            rows.append(cells)
        # object columns keep None as null (missing keys would come as NaN, which Spark reads as a value)
        yield pd.DataFrame({name: pd.Series([r.get(name) for r in rows], dtype=object) for name in names})


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """A cell as the readers give it: an array (a list column) as a list."""
    tolist = getattr(value, "tolist", None)
    return tolist() if tolist is not None else value


# -- spark-submit ------------------------------------------------------------------------
def _format(path: str, given: str | None, default: str) -> str:
    """The format given, else the path's by its extension, else ``default``."""
    name = path.rstrip("/").lower()
    if given:
        return given
    if name.endswith((".json", ".jsonl", ".ndjson")):
        return "json"
    return "parquet" if name.endswith((".parquet", ".pq")) else default


def main(argv: list[str] | None = None) -> int:
    """Classify Parquet or JSON Lines paths into Parquet or JSON Lines; the exit status is 1
    when some rows failed (they are error rows in the output), as with ``intake classify``."""
    ap = argparse.ArgumentParser(prog="classifier/spark.py", description=main.__doc__.split(";")[0])
    ap.add_argument("--input", nargs="+", required=True, help="files or folders (Parquet, or JSON Lines)")
    ap.add_argument("--output", required=True, help="folder to write")
    ap.add_argument("--input-format", choices=["parquet", "json"], default=None,
                    help="default: json for paths ending .json/.jsonl/.ndjson, else parquet")
    ap.add_argument("--output-format", choices=["parquet", "json"], default=None,
                    help="default: by the extension of --output, else as the input")
    ap.add_argument("--mode", choices=["error", "overwrite"], default="error",
                    help="when the output exists (Spark's save modes; default: error)")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--include-text", action="store_true", help="add the column text, secrets masked")
    ap.add_argument("--model", default=None, help="model folder on every worker (default: the bundled model)")
    ap.add_argument("--rules", default=None, help="rules folder on every worker (default: the bundled rules)")
    ap.add_argument("--no-model", action="store_true", help="rules alone")
    args = ap.parse_args(argv)

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = SparkSession.builder.appName("intake classify").getOrCreate()
    in_fmt = _format(args.input[0], args.input_format, "parquet")
    out_fmt = _format(args.output, args.output_format, in_fmt)
    requests = spark.read.format(in_fmt).load(args.input)
    results = classify_dataframe(requests, text_col=args.text_col, model_dir=args.model, rules_dir=args.rules,
                                 use_model=not args.no_model, include_text=args.include_text)
    results.write.mode(args.mode).format(out_fmt).save(args.output)
    written = spark.read.format(out_fmt).schema(result_schema(args.include_text)).load(args.output)
    counts = written.agg(F.count("*").alias("rows"), F.count("error").alias("failed")).first()
    print(f"classified {counts['rows'] - counts['failed']} rows, {counts['failed']} failed; "
          f"results in {args.output} ({out_fmt})", file=sys.stderr)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    from classifier.spark import main as _main  # the package's module, so workers unpickle its functions by reference

    sys.exit(_main())
