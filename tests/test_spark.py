"""Spark (classifier/spark.py) on a local[2] session shared by the module: results equal
to the CLI's on 2,000 rows, typed columns, the spark-submit entry on JSON Lines and
Parquet paths. Skipped only where Java is missing outside CI; in CI (CI=true) a missing
Java is a failure."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    if os.environ.get("CI"):
        pytest.fail("Java is missing: .ci/run installs openjdk-17-jre-headless for the Spark tests",
                    pytrace=False)
    pytest.skip("no Java here (CI installs it)", allow_module_level=True)

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from classifier.cli import main  # noqa: E402
from classifier.spark import classify_dataframe, result_schema  # noqa: E402
from classifier.spark import main as spark_main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# pyspark 4.x warns that it does not yet fully support pandas 3; what these tests use works
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")


@pytest.fixture(scope="module")
def spark():
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers run this virtualenv's Python
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("intake tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.memory", "1g").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def requests(n: int) -> list[dict]:
    """``n`` corpus requests (every language) with distinct ids and their fields, a few broken."""
    rows = [json.loads(line) for line in (ROOT / "data" / "tickets.jsonl").read_text(encoding="utf-8").splitlines()]
    out = []
    for i in range(n):
        src = rows[(i * 11) % len(rows)]
        out.append({"id": f"s-{i:05d}", "text": src["text"], "subject": src.get("subject"),
                    "channel": src.get("channel"), "attachments": src.get("attachments"),
                    "product": src.get("product")})
    out[7]["text"] = ""
    if n == 2000:
        out[1500]["channel"] = "fax"
        out[1999]["attachments"] = ["scan.HEIC"]
    return out


SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("subject", pa.string()), ("channel", pa.string()),
                    ("attachments", pa.list_(pa.string())), ("product", pa.string())])


def without_row_numbers(error: str | None) -> str | None:
    """An error message with its row numbers left out: Spark counts rows per partition."""
    return None if error is None else re.sub(r"row \d+", "row N", error)


def test_spark_results_equal_the_clis_on_2000_rows(spark, tmp_path):
    source = tmp_path / "tickets.parquet"
    pq.write_table(pa.Table.from_pylist(requests(2000), schema=SCHEMA), source, row_group_size=500)
    out = tmp_path / "cli.parquet"
    run = CliRunner().invoke(main, ["classify", "--quiet", "--input", str(source), "--output", str(out)])
    assert run.exit_code == 1, run.output  # two rows fail
    cli = {r["id"]: r for r in pq.read_table(out).to_pylist()}

    results = classify_dataframe(spark.read.parquet(str(source)).repartition(2))
    assert results.schema.simpleString() == f"struct<{result_schema().replace(' ', ':').replace(',:', ',')}>"
    got = {r["id"]: r.asDict(recursive=True) for r in results.collect()}
    assert len(got) == len(cli) == 2000
    failed = sorted(i for i, r in got.items() if r["error"])
    assert failed == ["s-00007", "s-01500"]
    for rid, row in got.items():
        expected = cli[rid]
        if row["error"]:
            assert without_row_numbers(row["error"]) == without_row_numbers(expected["error"])
            row["error"] = expected["error"]
        assert row == expected, rid
    assert "attachment_format" in got["s-01999"]["flags"]
    assert len({r["language"] for r in got.values() if r["language"]}) == 7


def test_text_col_integer_ids_rows_without_id_and_include_text(spark):
    df = spark.createDataFrame([(7, "Server down. SSH root@10.0.0.5, password Tq9!vB7xRm. Bitrix24 Enterprise 24.300.100"),
                                (None, "How do I add a custom field to deals?")], "id long, body string").coalesce(1)
    rows = classify_dataframe(df, text_col="body", include_text=True).collect()
    assert [r["id"] for r in rows] == ["7", None]  # as the CLI writes an integer id; none stays none
    assert rows[1]["error"] is None and rows[1]["category"]  # classified, not an error row
    assert "password [MASKED]" in rows[0]["text"] and "Tq9!vB7xRm" not in json.dumps([r.asDict() for r in rows])
    assert "credentials_present" in rows[0]["flags"]
    with pytest.raises(ValueError, match="the DataFrame has no column 'text' with the request text; its columns are body$"):
        classify_dataframe(df.drop("id"))


def test_the_spark_submit_entry_classifies_json_lines_into_parquet_and_back(spark, tmp_path, capsys):
    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n"
                              for r in requests(20)), encoding="utf-8")
    assert spark_main(["--input", str(source), "--output", str(tmp_path / "out"), "--output-format", "parquet"]) == 1
    assert "classified 19 rows, 1 failed; results in" in capsys.readouterr().err
    table = pq.read_table(tmp_path / "out")
    assert sorted(table.column("id").to_pylist()) == [f"s-{i:05d}" for i in range(20)]
    assert spark_main(["--input", str(tmp_path / "out"), "--output", str(tmp_path / "again.json"),
                       "--text-col", "suggested_reply"]) == 1  # the replies as requests; the failed row has none
    lines = [json.loads(line) for f in sorted((tmp_path / "again.json").glob("part-*")) for line in f.open()]
    assert len(lines) == 20 and all("category" in line or "error" in line for line in lines)
