"""Batch I/O: JSONL and CSV readers (row numbers, BOM, quoting, bad bytes,
truncated and non-object lines) and the JSONL/CSV writers."""
from __future__ import annotations

import csv
import io
import json
import os
import threading
import tracemalloc

import pytest

from classifier import batch
from classifier.errors import InputError, IntakeError
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
    assert error_of(records[1]) == "[E037] row 2: not valid CSV (line 3): a quoted field is never closed"
    assert records[1].record.request_id == "b"


def test_csv_misquoted_record_fails_only_its_row():
    records = csv_rows(b'id,text\na,"the ""Save"" button"\nb,"the "Save" button",x\nc,the portal is slow\n')
    assert records[0].record == {"id": "a", "text": 'the "Save" button'}
    assert error_of(records[1]) == "[E037] row 2: not valid CSV (line 3): ',' expected after '\"'"
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
    assert batch.detect_format("lake/tickets-2024.parquet", None) == "parquet"
    assert batch.detect_format("tickets.PQ", None) == "parquet"
    with pytest.raises(InputError, match=r"^\[E040\] Input format 'xml' is not supported\. Use one of: jsonl, csv, parquet$"):
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


def test_unwritable_result_becomes_its_rows_error_and_the_others_are_written():
    # a value JSON has no form for (here a set in the explanation) fails its own row only
    broken = result("T-2")
    broken.explanation = {"rules": [], "model": {}, "policy": {"thresholds": {0.5, 0.7}}}
    broken.row = 2
    for fmt in ("jsonl", "csv"):
        out = io.StringIO()
        passed = list(batch.write_results([result("T-1"), broken, result("T-3")], out, fmt))
        assert [r.ok for r in passed] == [True, False, True]
        message = "[E046] row 2: the result cannot be written as " + (
            "JSON: TypeError: Object of type set is not JSON serializable." if fmt == "jsonl" else
            "CSV: TypeError: Object of type set is not JSON serializable.")
        assert passed[1].error == {"row": 2, "field": None, "message": message}
        if fmt == "jsonl":
            rows = [json.loads(line) for line in out.getvalue().splitlines()]
            assert [r["id"] for r in rows] == ["T-1", "T-2", "T-3"]
            assert rows[1] == {"id": "T-2", "error": {"row": 2, "field": None, "message": message}}
        else:
            rows = list(csv.DictReader(io.StringIO(out.getvalue())))
            assert [r["id"] for r in rows] == ["T-1", "T-2", "T-3"]
            assert rows[1]["error"] == f"row 2: {message}" and rows[2]["severity"] == "critical"


# ---------------------------------------------------------------- CSV quotes that run on
QUOTED_TEXTS = ["Since the update the deal card shows \"Access denied\" for managers, admins are fine.",
                "How do I set working hours in open channels?",
                "The export to Excel stops at 50%,\nthe file is empty."]
PLAIN_TEXTS = ["Since the update the deal card shows Access denied for managers but not for admins.",
               "How do I set working hours in open channels?",
               "The export to Excel stops at 50% and the file is empty."]


def csv_export(rows: int, broken: dict[int, str], texts: list[str] = QUOTED_TEXTS) -> bytes:
    """A CSV export of ``rows`` requests; the rows in ``broken`` are written as given."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "subject", "text", "channel"])
    for row in range(1, rows + 1):
        if row in broken:
            out.write(broken[row] + "\r\n")
        else:
            writer.writerow([f"T-{row:05d}", "Portal", texts[row % 3], "webform"])
    return out.getvalue().encode("utf-8")


def test_csv_quote_never_closed_is_reported_with_what_it_took_in_and_the_rows_after_it_are_read():
    # the customer's text opens a quote that is never closed: csv reads on to the end of the file
    data = csv_export(10_000, {10: 'T-00010,Export,"The export stops at ""50%"" and the file is empty,webform'},
                      PLAIN_TEXTS)
    records = csv_rows(data)
    assert [r.row for r in records] == list(range(1, 10_001))
    bad = records[9].record
    lines_after = data.count(b"\r\n") - 11  # the header and rows 1-10 come before
    chars_after = len(data.decode("utf-8").split("\r\n", 11)[11])
    assert str(bad) == (f"[E038] row 10: not valid CSV: the quoted field opened on line 11 is never closed, "
                        f"taking in {lines_after} more lines ({chars_after} characters); the lines after line 11 "
                        "were read again as rows. Close the quote, or write a \" inside a field as \"\".")
    assert "JSON" not in str(bad)
    assert (bad.row, bad.request_id) == (10, "T-00010")
    good = [r.record for r in records if r.row != 10]
    assert [r["id"] for r in good] == [f"T-{i:05d}" for i in range(1, 10_001) if i != 10]
    assert [r["text"] for r in good] == [PLAIN_TEXTS[i % 3] for i in range(1, 10_001) if i != 10]


def test_csv_quote_closed_by_a_later_row_is_reported_and_the_rows_between_are_read():
    # a stray quote at row 3; the quote that opens row 6's text closes it and the record breaks there
    data = csv_export(8, {3: 'T-00003,Portal,"The portal is down since 8 am,webform'})
    lines = data.decode("utf-8").splitlines(keepends=True)
    assert lines[6].startswith('T-00005,Portal,"The export')  # line 7: its quote ends row 3's field
    records = csv_rows(data)
    assert [r.row for r in records] == list(range(1, 9))
    assert str(records[2].record) == (
        "[E038] row 3: not valid CSV: the quoted field opened on line 5 ends on line 7 (',' expected after '\"'), "
        f"taking in 2 more lines ({len(lines[5]) + len(lines[6])} characters); the lines after line 5 were "
        "read again as rows. Close the quote, or write a \" inside a field as \"\".")
    good = [r.record for r in records if r.row != 3]
    assert [r["id"] for r in good] == ["T-00001", "T-00002", "T-00004", "T-00005", "T-00006", "T-00007", "T-00008"]
    assert [r["text"] for r in good] == [QUOTED_TEXTS[i % 3] for i in (1, 2, 4, 5, 6, 7, 8)]


# ---------------------------------------------------------------- line ends, encodings, long lines
def test_jsonl_and_csv_with_cr_line_ends_have_one_row_per_line():
    # as old Mac software (and some exports) write them: \r alone
    records = jsonl(b'{"id": "a", "text": "The portal is down."}\r{"id": "b", "text": "Mail does not sync."}\r'
                    b'\r{"id": "c", "text": "Deals do not open."}')
    assert [(r.row, r.record["id"]) for r in records] == [(1, "a"), (2, "b"), (4, "c")]
    records = csv_rows(b'id,text\rc-1,The portal is down.\rc-2,"Mail does not sync\rsince Monday."\r')
    assert [r.record for r in records] == [{"id": "c-1", "text": "The portal is down."},
                                           {"id": "c-2", "text": "Mail does not sync\rsince Monday."}]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_a_byte_order_mark_are_read(encoding):
    # Excel's "Unicode text" and PowerShell's Out-File write UTF-16 with a byte-order mark
    bom = {"utf-16": "", "utf-16-be": "\ufeff", "utf-32": ""}[encoding]
    text = "Grüße, die Synchronisation der Kontakte schlägt fehl"
    data = bom + f'{{"id": "de-1", "text": "{text}"}}\r\n{{"id": "de-2", "text": "Привет, портал не работает"}}\r\n'
    records = jsonl(data.encode(encoding))
    assert [r.record for r in records] == [{"id": "de-1", "text": text},
                                           {"id": "de-2", "text": "Привет, портал не работает"}]
    records = csv_rows((bom + f'id,text\r\nde-1,"{text}"\r\n').encode(encoding))
    assert [r.record for r in records] == [{"id": "de-1", "text": text}]


def test_an_overlong_line_is_skipped_as_it_is_read_not_held_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "MAX_LINE_BYTES", 1024 * 1024)
    path = tmp_path / "requests.jsonl"
    first = b'{"id": "a", "text": "The portal is down since 8 am."}\n'
    last = b'{"id": "c", "text": "Mail does not sync."}\n'
    with open(path, "wb") as f:
        f.write(first + b'{"id": "pasted-dump", "text": "')
        f.seek(64 * 1024 * 1024, os.SEEK_CUR)  # 64 MB of NUL bytes and no line end (sparse: instant to make)
        f.write(b'"}\n' + last)
    size = path.stat().st_size - len(first) - len(last)
    tracemalloc.start()
    try:
        records = list(batch.read_requests(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r.row for r in records] == [1, 2, 3]
    assert error_of(records[1]) == f"[E035] row 2: line is {size} bytes, over the limit of 1048576 bytes."
    assert records[2].record == {"id": "c", "text": "Mail does not sync."}
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while reading"


# ---------------------------------------------------------------- inputs that are not files
def test_a_directory_as_input_is_named_as_one(tmp_path):
    with pytest.raises(InputError) as exc:
        batch.read_requests(tmp_path)
    assert str(exc.value) == (f"[E042] Input {tmp_path} is a directory, not a file of requests; "
                              "give a JSONL or CSV file, or - for standard input.")


def test_dev_null_is_an_empty_input():
    assert list(batch.read_requests("/dev/null")) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_named_pipe_is_read_like_standard_input(tmp_path):
    # as `--input <(zcat requests.jsonl.gz)` hands it over
    fifo = tmp_path / "requests.jsonl"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b'{"id": "p-1", "text": "The portal is down."}\n'),
                              daemon=True)
    writer.start()
    records = list(batch.read_requests(fifo))
    writer.join(10)
    assert records == [NumberedRecord(1, {"id": "p-1", "text": "The portal is down."})]


# ---------------------------------------------------------------- output files
def results(*ids: str) -> list[Result]:
    out = []
    for row, rid in enumerate(ids, 1):
        r = result(rid)
        r.row = row
        out.append(r)
    return out


def write(output: batch.OutputFile, items: list[Result]) -> None:
    list(batch.write_results(items, output.stream, output.fmt, header=output.header))
    output.commit()


def test_an_existing_output_is_not_replaced_without_overwrite(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "old-1", "error": {"row": 1, "field": null, "message": "x"}}\n', encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(IntakeError) as exc:
        batch.OutputFile(path, "jsonl")
    assert str(exc.value) == (f"[E043] Output file {path} exists; pass --overwrite to replace it, or --resume "
                              "to keep its rows and classify only the requests not in it yet.")
    assert path.read_bytes() == before


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_overwrite_writes_beside_the_file_and_renames_it_only_at_the_end(tmp_path, fmt):
    path = tmp_path / f"results.{fmt}"
    write(batch.OutputFile(path, fmt), results("old-1", "old-2"))
    before = path.read_bytes()
    output = batch.OutputFile(path, fmt, overwrite=True)
    list(batch.write_results(results("new-1"), output.stream, fmt))
    output.stream.flush()
    assert path.read_bytes() == before  # nothing replaced while the run goes on
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] != []
    state = output.discard()  # the run fails
    assert state == "the previous file is unchanged"
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    write(batch.OutputFile(path, fmt, overwrite=True), results("new-1"))
    assert b"new-1" in path.read_bytes() and b"old-1" not in path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_knows_the_rows_in_the_file_and_removes_a_row_cut_off(tmp_path, fmt):
    path = tmp_path / f"results.{fmt}"
    first = results("T-1", "T-2", "T-3")
    first[2] = Result(id=None, row=3, error={"row": 3, "field": None, "message": "[E030] row 3: not valid JSON: x"})
    write(batch.OutputFile(path, fmt), first)
    whole = path.read_bytes()
    with open(path, "ab") as f:  # the run after it stopped (a crash, a full disk) half way through a row
        f.write(b'{"id": "T-4", "category": "product_error", "sco' if fmt == "jsonl" else
                b'T-4,product_error,in_scope,3.4.in.1,critical,1,,,,0.82,False,"Hello,\r\n')
    output = batch.OutputFile(path, fmt, resume=True)
    assert (output.done.ids, output.done.rows, output.done.count) == ({"T-1", "T-2"}, {3}, 3)
    assert output.done.cut > 0 and output.header is False
    assert path.read_bytes() == whole
    pending = [NumberedRecord(1, {"id": "T-1", "text": "a"}), NumberedRecord(2, {"id": "T-2", "text": "b"}),
               NumberedRecord(3, InputError("[E030] row 3: not valid JSON: x", row=3)),
               NumberedRecord(4, {"id": "T-4", "text": "d"}), NumberedRecord(5, {"text": "e"})]
    assert [r.row for r in output.done.skip(pending)] == [4, 5]
    assert output.done.skipped == 3
    write(output, results("T-4"))
    text = path.read_text(encoding="utf-8")
    ids = ([json.loads(line)["id"] for line in text.splitlines()] if fmt == "jsonl" else
           [r["id"] for r in csv.DictReader(io.StringIO(text))])
    assert ids == ["T-1", "T-2", None if fmt == "jsonl" else "", "T-4"]


def test_resume_refuses_a_file_intake_did_not_write(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text("meeting notes\nnot results\n", encoding="utf-8")
    with pytest.raises(IntakeError) as exc:
        batch.OutputFile(path, "jsonl", resume=True)
    assert str(exc.value) == (f"[E045] Cannot resume {path}: line 1 is not a result of intake; move the file "
                              "away, or pass --overwrite to start over.")
    assert path.read_text(encoding="utf-8") == "meeting notes\nnot results\n"
