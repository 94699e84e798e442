"""Scaling out: ``--jobs 2`` against ``--jobs 1``, and Spark ``local[2]`` against ``--jobs 2``,
on the same requests, with the outputs checked equal; and the memory of a Parquet backfill.

    python benchmarks/scale.py [--n 20000] [--repeat 2] [--no-spark]
    python benchmarks/scale.py --parquet-memory 1000000 [--jobs 2]

The requests repeat the rows of ``data/tickets.jsonl`` (every language) with new ids.
What is timed is the batch path of ``intake classify``: read the file, classify, write
the output (``Classifier.classify_many`` for one job, ``classify_in_processes`` for
several), once the rules and model are loaded and every language's pipeline is built,
as a backfill pays that once (the load is printed on its own). One job and two jobs
are timed in turn, ``--repeat`` rounds, the best of each counting (the machine's other
load only ever slows a run down); the two JSONL outputs must be byte for byte equal.
Spark reads the same requests as JSON Lines in two partitions and writes Parquet; its
Python workers are warmed by a first job over every language, and it is compared with
two jobs writing Parquet, rows checked equal. Ends with the lines

    jobs 2 vs 1: X (n=20000)
    spark local[2] vs jobs 2: Y (n=20000)

where X and Y are ratios of requests per second (above 1: the first is faster).
``--parquet-memory N`` writes N requests to a Parquet file and classifies it into
Parquet, reporting how much the parent's resident memory grew over the run and the
largest worker's peak (a forked worker shares the parent's pages, so its growth is not
told apart; run two sizes to see it stay flat); it ends with
``parquet memory: parent +A MB, worker peak B MB (n=N)``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from classifier import batch
from classifier.classify import Classifier
from classifier.parallel import classify_in_processes
from classifier.parquet import ROWS_PER_GROUP

ROOT = Path(__file__).resolve().parent.parent


def requests(n: int) -> list[dict]:
    rows = [json.loads(line) for line in (ROOT / "data" / "tickets.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    out = []
    for i in range(n):
        src = rows[i % len(rows)]
        record = {"id": f"scale-{i:07d}", "text": src["text"]}
        for key in ("subject", "channel", "attachments", "product"):
            if key in src:
                record[key] = src[key]
        out.append(record)
    return out


def run_batch(clf: Classifier, source: Path, out: Path, jobs: int, fmt: str = "jsonl") -> float:
    """Seconds for the batch path of ``intake classify --jobs N`` from ``source`` to ``out``."""
    start = time.perf_counter()
    output = batch.OutputFile(out, fmt, overwrite=True)
    records = batch.read_requests(source)
    if jobs == 1:
        results = clf.classify_many(records)
    else:
        results = classify_in_processes(clf, records, jobs, encode=batch.Encoder(fmt))
    for _ in batch.write_results(results, output.stream, fmt):
        pass
    output.commit()
    return time.perf_counter() - start


def spark_seconds(source: Path, out: Path, warm: Path) -> float:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    from classifier.spark import classify_dataframe

    spark = (SparkSession.builder.master("local[2]").appName("intake scale").config("spark.ui.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    # the Python workers load the classifier and build each language's pipeline once, as on a long run
    classify_dataframe(spark.read.json(str(warm)).repartition(2)).write.mode("overwrite").parquet(str(out))
    start = time.perf_counter()
    classify_dataframe(spark.read.json(str(source)).repartition(2)).write.mode("overwrite").parquet(str(out))
    seconds = time.perf_counter() - start
    spark.stop()
    return seconds


def scale(n: int, repeat: int, with_spark: bool) -> None:
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="intake-scale-") as tmp:
        folder = Path(tmp)
        source = folder / "requests.jsonl"
        source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests(n)), encoding="utf-8")
        start = time.perf_counter()
        clf = Classifier.load()
        clf.analyser.warm_up()
        print(f"load and build every language's pipeline: {time.perf_counter() - start:.1f} s")
        best = {1: float("inf"), 2: float("inf")}
        for _ in range(repeat):
            for jobs in (1, 2):
                best[jobs] = min(best[jobs], run_batch(clf, source, folder / f"jobs{jobs}.jsonl", jobs))
        same = (folder / "jobs1.jsonl").read_bytes() == (folder / "jobs2.jsonl").read_bytes()
        for jobs in (1, 2):
            print(f"--jobs {jobs}: {best[jobs]:.1f} s, {n / best[jobs]:.0f} req/s")
        print(f"outputs byte for byte equal: {same}")
        print(f"jobs 2 vs 1: {best[1] / best[2]:.2f} (n={n})")
        if not with_spark:
            return
        jobs2 = run_batch(clf, source, folder / "jobs2.parquet", 2, "parquet")
        warm = folder / "warm.jsonl"
        warm.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests(400)), encoding="utf-8")
        spark = spark_seconds(source, folder / "spark.parquet", warm)
        ours = sorted(pq.read_table(folder / "jobs2.parquet").to_pylist(), key=lambda r: r["id"])
        theirs = sorted(pq.read_table(folder / "spark.parquet").to_pylist(), key=lambda r: r["id"])
        print(f"--jobs 2 to Parquet: {jobs2:.1f} s, {n / jobs2:.0f} req/s; spark local[2]: {spark:.1f} s, "
              f"{n / spark:.0f} req/s; rows equal: {ours == theirs}")
        print(f"spark local[2] vs jobs 2: {jobs2 / spark:.2f} (n={n})")


def _rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def parquet_memory(n: int, jobs: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="intake-memory-") as tmp:
        folder = Path(tmp)
        source = folder / "requests.parquet"
        rows = requests(min(n, ROWS_PER_GROUP))
        schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("subject", pa.string()),
                            ("channel", pa.string()), ("attachments", pa.list_(pa.string())), ("product", pa.string())])
        with pq.ParquetWriter(source, schema) as writer:
            for start in range(0, n, len(rows)):
                part = [{**r, "id": f"mem-{start + i:08d}"} for i, r in enumerate(rows[:n - start])]
                writer.write_table(pa.Table.from_pylist(part, schema=schema))
        print(f"{n} requests written to Parquet: {source.stat().st_size / 2**20:.0f} MB")
        clf = Classifier.load()
        clf.analyser.warm_up()
        for _ in clf.classify_many(rows[:200]):  # the first requests' lazy tables, not the file's rows
            pass
        before = _rss_mb()
        start = time.perf_counter()
        run_batch(clf, source, folder / "results.parquet", jobs, "parquet")
        seconds = time.perf_counter() - start
        parent = _rss_mb("VmHWM") - before
        worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if jobs > 1 else 0.0
        written = pq.ParquetFile(folder / "results.parquet").metadata
        print(f"classified {written.num_rows} rows into {written.num_row_groups} row groups in {seconds:.0f} s "
              f"({n / seconds:.0f} req/s, --jobs {jobs}); resident memory before {before:.0f} MB")
        print(f"parquet memory: parent +{parent:.0f} MB, worker peak {worker:.0f} MB (n={n})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="requests (default 20000)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of --jobs 1 and 2; the best of each counts")
    ap.add_argument("--no-spark", action="store_true", help="leave out Spark")
    ap.add_argument("--parquet-memory", type=int, metavar="N", help="measure memory over N requests in Parquet")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for --parquet-memory (default 2)")
    args = ap.parse_args()
    if args.parquet_memory:
        parquet_memory(args.parquet_memory, args.jobs)
    else:
        scale(args.n, args.repeat, not args.no_spark)


if __name__ == "__main__":
    main()
