"""Parquet in and out (classifier/parquet.py): typed columns that say what the JSONL output
says, rows read with their numbers and per-row errors, row groups, --resume, masking."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from classifier import batch
from classifier.cli import main
from classifier.errors import InputError, IntakeError
from classifier.parquet import ParquetRows, arrow_schema, read_parquet
from classifier.result import Result

TICKETS = [
    {"id": 101, "text": "Since 06:40 https://portal.hansen-logistik.de shows 502 Bad Gateway for everybody, nobody can "
                        "log in. Bitrix24 Enterprise, main 24.300.100.", "channel": "webform", "queue": "L2"},
    {"id": 102, "text": "How much does the Professional plan cost for 100 users per year?", "channel": "email"},
    {"id": 103, "text": None, "channel": "webform"},
    {"id": 104, "text": "Server down. SSH access root@10.0.0.5, password Tq9!vB7xRm. Bitrix24 Enterprise 24.300.100",
     "attachments": ["screen.bmp", "log.zip"]},
    {"id": None, "text": "Добрый день! После обновления не открываются сделки в CRM, белый экран.", "channel": "fax"},
]


SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string()), ("channel", pa.string()), ("queue", pa.string()),
                    ("attachments", pa.list_(pa.string()))])


def tickets_file(path: Path, rows: list[dict] = TICKETS) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path, row_group_size=2)
    return path


def test_rows_are_read_in_order_with_their_numbers_nulls_left_out_and_other_columns_ignored(tmp_path):
    records = list(read_parquet(tickets_file(tmp_path / "t.parquet")))
    assert [r.row for r in records] == [1, 2, 3, 4, 5]
    assert records[0].record == {"id": 101, "text": TICKETS[0]["text"], "channel": "webform"}  # no queue
    assert records[2].record == {"id": 103, "channel": "webform"}
    assert records[3].record["attachments"] == ["screen.bmp", "log.zip"]


def test_a_file_that_is_not_parquet_or_standard_input_is_an_input_error(tmp_path):
    notes = tmp_path / "notes.parquet"
    notes.write_text("meeting notes\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"^\[E047\] Cannot read input {notes}: not a Parquet file"):
        batch.read_requests(notes)
    with pytest.raises(InputError, match=r"^\[E047\] Cannot read input standard input: Parquet is read from a file"):
        batch.read_requests("-", "parquet")


def test_parquet_out_has_typed_columns_that_say_what_the_jsonl_says(runner, tmp_path):
    source = tickets_file(tmp_path / "t.parquet")
    run = runner.invoke(main, ["classify", "--input", str(source), "--output", str(tmp_path / "r.parquet")])
    assert run.exit_code == 1  # rows 3 and 5 failed
    assert "classified 3 rows, 2 failed" in run.stderr
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.schema == arrow_schema()
    run = runner.invoke(main, ["classify", "--quiet", "--input", str(source), "--output", str(tmp_path / "r.jsonl")])
    as_json = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [d["id"] for d in as_json] == ["101", "102", "103", "104", "5"]
    for row, d in zip(rows, as_json):
        if "error" in d:
            assert row["error"] == f"row {d['error']['row']}: {d['error']['message']}" and row["category"] is None
            continue
        assert row["clauses"] == [c["id"] for c in d["clauses"]]
        assert json.loads(row["explanation"]) == d["explanation"]
        assert {k: row[k] for k in d if k not in ("clauses", "explanation")} == {k: v for k, v in d.items()
                                                                                  if k not in ("clauses", "explanation")}
    assert rows[0]["severity"] == "critical" and rows[0]["response_time_hours"] == 1
    assert {"credentials_present", "attachment_format"} <= set(rows[3]["flags"])
    assert rows[2]["error"] == "row 3: [E031] row 3: field 'text' is missing or empty."
    assert rows[4]["error"].startswith("row 5: [E034] row 5: field 'channel' value 'fax' is not allowed.")


def test_include_text_adds_the_masked_text_and_no_secret_is_written(runner, tmp_path):
    out = tmp_path / "r.parquet"
    runner.invoke(main, ["classify", "--include-text", "--input", str(tickets_file(tmp_path / "t.parquet")),
                         "--output", str(out)])
    table = pq.read_table(out)
    assert table.schema == arrow_schema(include_text=True)
    assert b"Tq9!vB7xRm" not in out.read_bytes() and "Tq9!vB7xRm" not in json.dumps(table.to_pylist())
    assert "password [MASKED]" in table.column("text")[3].as_py()


def test_results_are_written_in_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr("classifier.parquet.ROWS_PER_GROUP", 4)
    path = tmp_path / "r.parquet"
    result = Result(id="T", category="general", scope="in_scope", clauses=[{"id": "3.6.in.1", "sla": ""}],
                    severity="low", response_time_hours=72, confidence=0.9, explanation={"rules": []},
                    suggested_reply="Hello", language="en")
    with open(path, "wb") as f:
        rows = ParquetRows(f)
        list(batch.write_results([result] * 10, rows, "parquet"))
        rows.close()
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 4, 2]


def test_resume_keeps_the_rows_of_a_parquet_output_and_adds_the_rest(runner, tmp_path):
    first = tickets_file(tmp_path / "first.parquet", TICKETS[:2])
    out = tmp_path / "r.parquet"
    assert runner.invoke(main, ["classify", "--quiet", "--input", str(first), "--output", str(out)]).exit_code == 0
    before = pq.read_table(out)
    source = tickets_file(tmp_path / "all.parquet")
    run = runner.invoke(main, ["classify", "--input", str(source), "--output", str(out), "--resume"])
    assert run.exit_code == 1
    assert f"classified 1 rows, 2 failed; 2 rows already in {out} skipped" in run.stderr
    after = pq.read_table(out)
    assert after.slice(0, 2).equals(before)
    assert after.column("id").to_pylist() == ["101", "102", "103", "104", "5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.parquet", "first.parquet", "r.parquet"]


def test_resume_refuses_a_parquet_file_intake_did_not_write(tmp_path):
    path = tickets_file(tmp_path / "tickets.parquet")
    with pytest.raises(IntakeError, match=r"^\[E045\] Cannot resume .*: it is not a results file of intake"):
        batch.OutputFile(path, "parquet", resume=True)
