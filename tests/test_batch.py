"""Batch I/O: JSONL and CSV readers (row numbers, BOM, quoting, bad bytes,
truncated and non-object lines) and the JSONL/CSV writers."""
from __future__ import annotations

import csv
import io
import json

import pytest

from classifier import batch
from classifier.errors import InputError
from classifier.request import NumberedRecord, Request
from classifier.result import Result


def jsonl(data: bytes) -> list[NumberedRecord]:
    return list(batch.read_jsonl(io.BytesIO(data)))


def csv_rows(data: bytes) -> list[NumberedRecord]:
    return list(batch.read_csv(io.BytesIO(data)))


def error_of(record: NumberedRecord) -> str:
    assert isinstance(record.record, InputError), record
    return str(record.record)


# ---------------------------------------------------------------- JSONL
def test_jsonl_rows_are_numbered_by_line_and_blank_lines_are_skipped_but_counted():
    data = (b'{"id": "a", "text": "The portal is down since 06:40."}\n'
            b"\n"
            b"   \n"
            b'{"text": "How do I set working hours in open channels?"}\n')
    records = jsonl(data)
    assert [r.row for r in records] == [1, 4]
    assert records[1].record == {"text": "How do I set working hours in open channels?"}


def test_jsonl_bom_on_the_first_line_is_ignored():
    records = jsonl(b'\xef\xbb\xbf{"id": "bom", "text": "Deals do not open."}\n')
    assert records == [NumberedRecord(1, {"id": "bom", "text": "Deals do not open."})]


def test_jsonl_undecodable_bytes_fail_only_their_row():
    data = (b'{"text": "first request"}\n'
            b'{"text": "Gr\xfc\xdfe, das Portal ist weg"}\n'
            b'{"text": "Gr\xc3\xbc\xc3\x9fe, the portal is back"}\n')
    records = jsonl(data)
    assert records[0].record == {"text": "first request"}
    assert error_of(records[1]) == "[E033] row 2: bytes are not valid UTF-8: invalid start byte"
    assert records[1].record.row == 2
    assert records[2].record == {"text": "Grüße, the portal is back"}


def test_jsonl_truncated_last_line_is_an_error_row():
    data = b'{"text": "first"}\n{"id": "t", "text": "the upload stopped half w'
    records = jsonl(data)
    assert records[0].record == {"text": "first"}
    assert error_of(records[1]) == "[E030] row 2: not valid JSON: Unterminated string starting at column 21"


def test_jsonl_last_line_without_newline_is_read():
    assert jsonl(b'{"text": "one"}\n{"text": "two"}') == [NumberedRecord(1, {"text": "one"}),
                                                           NumberedRecord(2, {"text": "two"})]


@pytest.mark.parametrize("line", [b'["portal down", "please help"]', b'"portal down"', b"42", b"null"])
def test_jsonl_non_object_line_is_an_error_row(line):
    records = jsonl(b'{"text": "ok"}\n' + line + b"\n")
    assert error_of(records[1]) == "[E036] row 2: not a JSON object."


def test_jsonl_invalid_json_names_the_column():
    records = jsonl(b"{'text': 'single quotes'}\n")
    assert error_of(records[0]) == ("[E030] row 1: not valid JSON: Expecting property name enclosed in "
                                    "double quotes at column 2")


def test_jsonl_overlong_line_is_reported_not_parsed(monkeypatch):
    monkeypatch.setattr(batch, "MAX_LINE_BYTES", 50)
    records = jsonl(b'{"text": "short"}\n{"text": "' + b"x" * 60 + b'"}\n')
    assert records[0].record == {"text": "short"}
    assert error_of(records[1]) == "[E035] row 2: line is 73 bytes, over the limit of 50 bytes."


# ---------------------------------------------------------------- CSV
CSV_TEXT = (
    'id,subject,text,channel,attachments\r\n'
    'T-1,Portal down,"Since 06:40 nobody can log in:\r\n""502 Bad Gateway"" on every page.",webform,screen.bmp;log.zip\r\n'
    'T-2,,"How do I set working hours, auto replies and queues?",live_chat,\r\n'
    'T-3,Deals,"Go to CRM > Deals > Delete,\nthen the page freezes.",email, a.png ; b.HEIC ;\r\n'
)


def test_csv_rows_are_numbered_by_record_with_embedded_newlines_and_quotes():
    records = csv_rows(CSV_TEXT.encode("utf-8"))
    assert [r.row for r in records] == [1, 2, 3]
    first = records[0].record
    assert first["text"] == 'Since 06:40 nobody can log in:\r\n"502 Bad Gateway" on every page.'
    assert first["subject"] == "Portal down"
    assert "subject" not in records[1].record  # empty cells are left out
    assert "attachments" not in records[1].record
    assert records[2].record["text"] == "Go to CRM > Deals > Delete,\nthen the page freezes."


def test_csv_attachments_are_semicolon_separated():
    records = csv_rows(CSV_TEXT.encode("utf-8"))
    assert Request.from_mapping(records[0].record).attachments == ("screen.bmp", "log.zip")
    assert Request.from_mapping(records[2].record).attachments == ("a.png", "b.HEIC")


def test_csv_bom_is_not_part_of_the_first_column_name():
    records = csv_rows(b"\xef\xbb\xbf" + CSV_TEXT.encode("utf-8"))
    assert records[0].record["id"] == "T-1"


def test_csv_undecodable_bytes_fail_only_their_row():
    data = (b"id,text\n"
            b"a,first request\n"
            b"b,Gr\xfc\xdfe das Portal ist weg\n"
            b"c,the third one\n")
    records = csv_rows(data)
    assert records[0].record == {"id": "a", "text": "first request"}
    assert error_of(records[1]) == "[E033] row 2: bytes are not valid UTF-8: invalid byte sequence"
    assert records[2].record == {"id": "c", "text": "the third one"}


def test_csv_extra_fields_beyond_the_header_are_dropped():
    records = csv_rows(b"id,text\nx,the portal is down,unexpected,cells\n")
    assert records[0].record == {"id": "x", "text": "the portal is down"}


def test_csv_unterminated_quote_at_the_end_is_an_error_row():
    records = csv_rows(b'id,text\na,fine\nb,"the upload stopped half w')
    assert records[0].record == {"id": "a", "text": "fine"}
    assert [r.row for r in records] == [1, 2]
    assert error_of(records[1]) == "[E030] row 2: not valid JSON: CSV: unexpected end of data"


def test_csv_misquoted_record_fails_only_its_row():
    records = csv_rows(b'id,text\na,"the ""Save"" button"\nb,"the "Save" button",x\nc,the portal is slow\n')
    assert records[0].record == {"id": "a", "text": 'the "Save" button'}
    assert error_of(records[1]) == "[E030] row 2: not valid JSON: CSV: ',' expected after '\"'"
    assert records[2] == NumberedRecord(3, {"id": "c", "text": "the portal is slow"})


# ---------------------------------------------------------------- files and formats
def test_read_requests_missing_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InputError, match=r"^\[E041\] Input file .*nope\.jsonl does not exist\.$"):
        list(batch.read_requests(missing))


def test_detect_format():
    assert batch.detect_format("tickets.CSV", None) == "csv"
    assert batch.detect_format("tickets.jsonl", None) == "jsonl"
    assert batch.detect_format("-", None) == "jsonl"
    assert batch.detect_format("tickets.txt", "csv") == "csv"
    with pytest.raises(InputError, match=r"^\[E040\] Input format 'xml' is not supported\. Use one of: jsonl, csv$"):
        batch.detect_format("a.xml", "xml")


def test_read_requests_reads_csv_files_by_extension(tmp_path):
    path = tmp_path / "requests.csv"
    path.write_bytes(CSV_TEXT.encode("utf-8"))
    assert [r.record["id"] for r in batch.read_requests(path)] == ["T-1", "T-2", "T-3"]


# ---------------------------------------------------------------- writers
def result(rid: str = "T-1") -> Result:
    return Result(id=rid, category="product_error", scope="in_scope",
                  clauses=[{"id": "3.4.in.1", "sla": "Runtime errors."}, {"id": "3.4.in.2", "sla": "Diagnosis."}],
                  severity="critical", response_time_hours=1, missing_info=["version", "edition"],
                  delay_reasons=["missing_information"], flags=["urgent_recovery", "unofficial_channel"],
                  confidence=0.82, needs_review=False, explanation={"rules": [], "model": {}, "policy": {}},
                  suggested_reply="Hello,\n\nWe will respond within 1 hour.")


def failed(row: int = 2) -> Result:
    return Result(id=None, error={"row": row, "field": "text", "message": f"[E031] row {row}: field 'text' is missing or empty."})


def test_jsonl_writer_one_object_per_line_passing_results_on():
    out = io.StringIO()
    passed = list(batch.write_results([result(), failed()], out, "jsonl"))
    assert [r.id for r in passed] == ["T-1", None]
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0]) == result().to_dict()
    assert json.loads(lines[1]) == {"id": None, "error": {"row": 2, "field": "text",
                                                          "message": "[E031] row 2: field 'text' is missing or empty."}}


def test_csv_writer_columns_and_flattened_values():
    out = io.StringIO()
    list(batch.write_results([result(), failed(3)], out, "csv"))
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == batch.CSV_COLUMNS
    good, bad = rows
    assert good["clauses"] == "3.4.in.1;3.4.in.2"
    assert good["missing_info"] == "version;edition"
    assert good["flags"] == "urgent_recovery;unofficial_channel"
    assert good["response_time_hours"] == "1" and good["needs_review"] == "False"
    assert good["suggested_reply"] == "Hello,\n\nWe will respond within 1 hour."
    assert json.loads(good["explanation"]) == {"rules": [], "model": {}, "policy": {}}
    assert good["error"] == ""
    assert bad["error"] == "row 3: [E031] row 3: field 'text' is missing or empty."
    assert bad["category"] == "" and bad["id"] == ""
