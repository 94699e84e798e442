"""The ``intake`` command: readable and JSON output, batch input from a file or
stdin, JSONL/CSV output, exit statuses, the schema command, and that every
command has help and is documented in README.md."""
from __future__ import annotations

import csv
import errno
import io
import json
import logging
from pathlib import Path

import click
import jsonschema
import pytest
from click.testing import CliRunner

from classifier import batch
from classifier.classify import Classifier
from classifier.cli import main

ROOT = Path(__file__).resolve().parent.parent
TEXT = ("Since 06:40 our intranet https://portal.hansen-logistik.de only shows 502 Bad Gateway for everybody, "
        "nobody can log in. Bitrix24 Enterprise, main 24.300.100.")
GOOD = [
    {"id": "c-1", "text": TEXT, "channel": "webform"},
    {"id": "c-2", "text": "How much does the Professional plan cost for 100 users per year?", "channel": "email"},
]


@pytest.fixture()
def runner(monkeypatch, loaded) -> CliRunner:
    """A CliRunner whose default Classifier.load() reuses one loaded classifier (loading takes ~2 s)."""
    original = Classifier.load.__func__

    def load(cls, path=None, *, rules_dir=None, use_model=True):
        if path is None and rules_dir is None and use_model:
            return loaded
        return original(cls, path, rules_dir=rules_dir, use_model=use_model)

    monkeypatch.setattr(Classifier, "load", classmethod(load))
    return CliRunner()


def write_jsonl(path: Path, records: list, extra: bytes = b"") -> Path:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records) + extra)
    return path


# ---------------------------------------------------------------- one request
def test_classify_text_prints_the_readable_summary(runner):
    run = runner.invoke(main, ["classify", TEXT])
    assert run.exit_code == 0, run.output
    out = run.output
    for label in ("category:", "clauses:", "severity:", "missing info:", "delay reasons:", "flags:",
                  "rules fired:", "model:", "suggested reply:"):
        assert f"\n{label}" in "\n" + out, label
    assert "severity:      critical (respond within 1 h)" in out
    assert "urgent_recovery" in out
    assert out.rstrip().endswith("Best regards,\nBitrix24 Technical Support")


def test_classify_text_json_is_valid_json_matching_the_schema(runner):
    run = runner.invoke(main, ["classify", "--json", "--subject", "URGENT portal down", TEXT])
    assert run.exit_code == 0, run.output
    result = json.loads(run.output)
    schema = json.loads(runner.invoke(main, ["schema"]).output)
    jsonschema.Draft202012Validator(schema).validate(result)
    assert result["severity"] == "critical" and result["response_time_hours"] == 1


def test_classify_text_without_model(runner):
    run = runner.invoke(main, ["classify", "--no-model", "--json", TEXT])
    assert run.exit_code == 0, run.output
    result = json.loads(run.output)
    assert result["explanation"]["model"] == {}


# ---------------------------------------------------------------- batches
def test_input_file_to_stdout_jsonl_exit_0(runner, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD)
    run = runner.invoke(main, ["classify", "--quiet", "--input", str(source)])
    assert run.exit_code == 0, run.output
    rows = [json.loads(line) for line in run.output.splitlines()]
    assert [r["id"] for r in rows] == ["c-1", "c-2"]
    assert rows[1]["category"] == "other" and "unofficial_channel" in rows[1]["flags"]


def test_input_from_stdin(runner):
    data = "".join(json.dumps(r) + "\n" for r in GOOD)
    run = runner.invoke(main, ["classify", "--quiet", "--input", "-"], input=data)
    assert run.exit_code == 0, run.output
    assert [json.loads(line)["id"] for line in run.output.splitlines()] == ["c-1", "c-2"]


def test_csv_from_stdin_with_format(runner):
    data = 'id,text,channel\ns-1,"How much does the Professional plan cost, per user?",email\n'
    run = runner.invoke(main, ["classify", "--quiet", "--input", "-", "--format", "csv"], input=data)
    assert run.exit_code == 0, run.output
    assert json.loads(run.output)["id"] == "s-1"


def test_output_csv_file_has_the_csv_columns(runner, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD)
    out = tmp_path / "out.csv"
    run = runner.invoke(main, ["classify", "--input", str(source), "--output", str(out)])
    assert run.exit_code == 0, run.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == batch.CSV_COLUMNS
    assert [r["id"] for r in rows] == ["c-1", "c-2"]
    assert rows[0]["severity"] == "critical" and rows[0]["error"] == ""
    assert "classified 2 rows, 0 failed" in run.output  # the summary goes to stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_output_jsonl_file_and_some_failed_rows_exit_1(runner, tmp_path, jobs, caplog):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD, extra=b'{"id": "c-3", "text": ""}\n')
    out = tmp_path / "out.jsonl"
    run = runner.invoke(main, ["classify", "--jobs", jobs, "--input", str(source), "--output", str(out)])
    assert run.exit_code == 1
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["c-1", "c-2", "c-3"]
    assert rows[2]["error"]["message"] == "[E031] row 3: field 'text' is missing or empty."
    assert "classified 2 rows, 1 failed" in run.output
    assert "failed row 3: [E031] row 3: field 'text' is missing or empty." in run.output
    # the warning for the failed row, logged in the worker that met it, is given by the parent
    assert [r.getMessage() for r in caplog.records if r.name == "intake"] == [
        "row 3 not classified: [E031] row 3: field 'text' is missing or empty."]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_quiet_prints_nothing_for_failed_rows_but_the_exit_status_says_so(runner, tmp_path, caplog, jobs):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD, extra=b'{"id": "c-3", "text": ""}\n{"id": "c-4", "text": [1]}\n')
    caplog.set_level(logging.DEBUG, logger="intake")
    run = runner.invoke(main, ["classify", "--quiet", "--jobs", jobs, "--input", str(source),
                               "--output", str(tmp_path / "out.jsonl")])
    assert run.exit_code == 1
    assert run.stdout == "" and run.stderr == ""
    assert [r.message for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert len((tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()) == 4


def test_a_row_whose_classification_fails_is_its_error_and_the_others_are_classified(runner, tmp_path, monkeypatch):
    import classifier.classify as classify_module

    real = classify_module.write_reply

    def write_reply(decision, templates, clause_texts):
        if decision.severity == "critical":  # as a reply template with {severity:d} fails on "critical"
            raise ValueError("Unknown format code 'd' for object of type 'str'")
        return real(decision, templates, clause_texts)

    monkeypatch.setattr(classify_module, "write_reply", write_reply)
    source = write_jsonl(tmp_path / "in.jsonl", [GOOD[1], GOOD[0], {**GOOD[1], "id": "c-3"}])
    out = tmp_path / "out.jsonl"
    run = runner.invoke(main, ["classify", "--input", str(source), "--output", str(out)])
    assert run.exit_code == 1
    assert "Traceback" not in run.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["c-2", "c-1", "c-3"]
    message = ("[E039] row 2: could not be classified (ValueError: Unknown format code 'd' for object of type 'str'); "
               "the other rows were. If every row fails like this, check the rules folder with: intake rules check")
    assert rows[1] == {"id": "c-1", "error": {"row": 2, "field": None, "message": message}}
    assert rows[0]["category"] == rows[2]["category"] == "other"
    assert "classified 2 rows, 1 failed" in run.stderr and f"failed row 2: {message}" in run.stderr


# ---------------------------------------------------------------- inputs that are not files
def test_a_directory_as_input_says_so(runner, tmp_path):
    run = runner.invoke(main, ["classify", "--input", str(tmp_path)])
    assert run.exit_code == 1
    assert run.stderr == (f"Error: [E042] Input {tmp_path} is a directory, not a file of requests; give a JSONL "
                          "or CSV file, or - for standard input.\n")


def test_dev_null_as_input_is_no_rows(runner, tmp_path):
    run = runner.invoke(main, ["classify", "--input", "/dev/null", "--output", str(tmp_path / "out.jsonl")])
    assert run.exit_code == 0, run.output
    assert run.stderr.startswith("classified 0 rows, 0 failed (the input has no rows)\n")
    assert (tmp_path / "out.jsonl").read_bytes() == b""


# ---------------------------------------------------------------- the output file
def test_an_existing_output_is_kept_unless_overwrite_or_resume_is_given(runner, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD)
    out = tmp_path / "results.jsonl"
    out.write_text('{"id": "earlier", "error": {"row": 1, "field": null, "message": "x"}}\n', encoding="utf-8")
    before = out.read_bytes()
    run = runner.invoke(main, ["classify", "--input", str(source), "--output", str(out)])
    assert run.exit_code == 1
    assert run.stderr == (f"Error: [E043] Output file {out} exists; pass --overwrite to replace it, or --resume to "
                          "keep its rows and classify only the requests not in it yet.\n")
    assert out.read_bytes() == before
    run = runner.invoke(main, ["classify", "--quiet", "--input", str(source), "--output", str(out), "--overwrite"])
    assert run.exit_code == 0, run.output
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["c-1", "c-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "results.jsonl"]  # no temporary file left


@pytest.mark.parametrize("fmt,jobs", [("jsonl", "1"), ("csv", "1"), ("jsonl", "2")])
def test_resume_adds_only_the_rows_not_in_the_output(runner, tmp_path, fmt, jobs):
    records = [*GOOD, {"id": "c-3", "text": "Mail does not sync since the update", "channel": "email"},
               {"text": "The kanban board of tasks is empty for every user."}]
    out = tmp_path / f"results.{fmt}"
    # a run that stopped after two rows, half way through writing the third
    first = runner.invoke(main, ["classify", "--quiet", "--input", str(write_jsonl(tmp_path / "a.jsonl", GOOD)),
                                 "--output", str(out)])
    assert first.exit_code == 0, first.output
    with open(out, "ab") as f:
        f.write(b'{"id": "c-3", "category": "prod' if fmt == "jsonl" else b'c-3,product_error,in_scope,"')
    run = runner.invoke(main, ["classify", "--input", str(write_jsonl(tmp_path / "b.jsonl", records)),
                               "--output", str(out), "--resume", "--jobs", jobs])
    assert run.exit_code == 0, run.output
    assert f"classified 2 rows, 0 failed; 2 rows already in {out} skipped" in run.stderr
    assert "a last row cut off" in run.stderr
    text = out.read_text(encoding="utf-8")
    rows = ([json.loads(line) for line in text.splitlines()] if fmt == "jsonl" else
            list(csv.DictReader(io.StringIO(text))))
    assert [r["id"] for r in rows] == ["c-1", "c-2", "c-3", "4"]
    assert all(r.get("category") for r in rows)
    again = runner.invoke(main, ["classify", "--input", str(tmp_path / "b.jsonl"), "--output", str(out), "--resume"])
    assert again.exit_code == 0 and out.read_text(encoding="utf-8") == text
    assert f"classified 0 rows, 0 failed; 4 rows already in {out} skipped" in again.stderr


def test_resume_and_overwrite_need_an_output_file(runner, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD)
    for args in (["--resume"], ["--overwrite"], ["--output", "-", "--resume"],
                 ["--output", str(tmp_path / "o.jsonl"), "--resume", "--overwrite"]):
        run = runner.invoke(main, ["classify", "--input", str(source), *args])
        assert run.exit_code == 2, args
        assert "Usage: " in run.output


@pytest.mark.parametrize("resume,jobs", [(False, "1"), (True, "1"), (True, "2")])
def test_a_full_disk_is_an_error_and_the_earlier_output_survives(runner, tmp_path, monkeypatch, resume, jobs):
    source = write_jsonl(tmp_path / "in.jsonl", [*GOOD, *({**GOOD[0], "id": f"more-{i}"} for i in range(4))])
    out = tmp_path / "results.jsonl"
    assert runner.invoke(main, ["classify", "--quiet", "--input", str(source), "--output", str(out)]).exit_code == 0
    before = out.read_bytes()
    real = batch.write_results

    def disk_fills_up(results, stream, fmt="jsonl", **kw):  # after two rows the disk is full, half way into a third
        for i, r in enumerate(real(results, stream, fmt, **kw)):
            if i == 1:
                stream.write('{"id": "more-2", "categ')
                stream.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            yield r

    monkeypatch.setattr(batch, "write_results", disk_fills_up)
    if resume:  # rows 1-2 are to be classified again, as if the earlier run had stopped there
        out.write_bytes(b"".join(before.splitlines(keepends=True)[2:]))
        before = out.read_bytes()
    flag = "--resume" if resume else "--overwrite"
    run = runner.invoke(main, ["classify", "--input", str(source), "--output", str(out), flag, "--jobs", jobs])
    assert run.exit_code == 1
    assert isinstance(run.exception, SystemExit) and "Traceback" not in run.output  # an error, not a crash
    if resume:
        kept = out.read_text(encoding="utf-8").splitlines()
        assert run.stderr.endswith(f"Error: [E044] Cannot write output {out}: No space left on device; its {len(kept)} "
                                   "whole rows are kept; run again with --resume to add the rest.\n")
        assert [json.loads(line)["id"] for line in kept] == ["more-0", "more-1", "more-2", "more-3", "c-1", "c-2"]
        assert out.read_bytes().startswith(before)
    else:
        assert run.stderr == (f"Error: [E044] Cannot write output {out}: No space left on device; "
                              "the previous file is unchanged.\n")
        assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "results.jsonl"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_dev_full_as_output_is_an_error_not_a_traceback(runner, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD)
    run = runner.invoke(main, ["classify", "--input", str(source), "--output", "/dev/full"])
    assert run.exit_code == 1
    assert isinstance(run.exception, SystemExit)
    assert run.stderr == ("Error: [E044] Cannot write output /dev/full: No space left on device; "
                          "the output is incomplete.\n")


def test_an_output_folder_that_cannot_be_written_is_an_error(runner, tmp_path, monkeypatch):
    import os

    source = write_jsonl(tmp_path / "in.jsonl", GOOD)
    real_open = os.open

    def read_only(path, flags, *args, **kw):  # as in a folder with mode r-x (not for root, so faked)
        if str(path).endswith(".part"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", read_only)
    run = runner.invoke(main, ["classify", "--input", str(source), "--output", str(tmp_path / "out.jsonl")])
    assert run.exit_code == 1
    assert isinstance(run.exception, SystemExit)
    assert run.stderr == (f"Error: [E044] Cannot write output {tmp_path / 'out.jsonl'}: Permission denied; "
                          "nothing was written.\n")


def test_missing_input_file_is_an_error_exit_1(runner, tmp_path):
    missing = tmp_path / "nope.jsonl"
    run = runner.invoke(main, ["classify", "--input", str(missing)])
    assert run.exit_code == 1
    assert run.output == f"Error: [E041] Input file {missing} does not exist.\n"


def test_unknown_rules_folder_is_an_error_exit_1(runner, tmp_path):
    run = runner.invoke(main, ["classify", "--rules", str(tmp_path / "none"), TEXT])
    assert run.exit_code == 1
    assert run.output == f"Error: [E001] Rules folder {tmp_path / 'none'} does not exist.\n"


@pytest.mark.parametrize("args", [["classify"], ["classify", TEXT, "--input", "x.jsonl"],
                                  ["classify", "--input", "x.jsonl", "--output-format", "xml"],
                                  ["classify", "--input", "x.jsonl", "--jobs", "0"],
                                  ["classify", "--input", "x.jsonl", "--jobs", "many"],
                                  ["classify", "--input", "x.jsonl", "--output-format", "parquet"]])
def test_usage_errors_exit_2(runner, args):
    run = runner.invoke(main, args)
    assert run.exit_code == 2
    assert "Usage: " in run.output


def test_neither_text_nor_input_says_what_to_give(runner):
    run = runner.invoke(main, ["classify"])
    assert "Error: give either TEXT or --input FILE (not both)" in run.output


# ---------------------------------------------------------------- schema
def test_schema_command_prints_a_schema_that_validates_a_real_result(runner, loaded):
    run = runner.invoke(main, ["schema"])
    assert run.exit_code == 0
    schema = json.loads(run.output)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(loaded.classify({"id": "x", "text": TEXT}).to_dict())
    assert not validator.is_valid({"id": "x", "category": "billing"})


# ---------------------------------------------------------------- help and README
def command_paths(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand under ``group``, as name paths."""
    out = []
    for name, command in sorted(group.commands.items()):
        path = prefix + (name,)
        out.append(path)
        if isinstance(command, click.Group):
            out += command_paths(command, path)
    return out


def test_every_command_has_help():
    runner = CliRunner()
    paths = command_paths()
    assert ("classify",) in paths and ("rules", "check") in paths
    for path in [()] + paths:
        run = runner.invoke(main, [*path, "--help"])
        assert run.exit_code == 0, (path, run.output)
        assert run.output.startswith("Usage: "), path
        command = main
        for name in path:
            command = command.commands[name]
        assert (command.help or "").strip(), f"intake {' '.join(path)} has no help text"


def test_every_command_appears_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [f"intake {' '.join(path)}" for path in command_paths()
               if f"intake {' '.join(path)}" not in readme]
    assert not missing, f"README.md does not document: {', '.join(missing)}"


def test_a_reader_that_stops_early_ends_the_run_quietly():
    """`intake classify --input big.jsonl | head -1`: no traceback, no error about the pipe."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "classifier.cli", "classify", "--no-model", "--quiet",
                             "--input", str(ROOT / "data" / "tickets.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what head does after its line
    _, err = proc.communicate(timeout=300)
    assert first.startswith(b'{"id": "p1-001"')
    assert proc.returncode == 1 and b"Traceback" not in err and b"Error" not in err, err.decode()[-500:]


MASK_ROWS = [
    {"id": "m-1", "channel": "email", "subject": "ssh root pass: Zr8#kLq2",
     "text": "Server is down. SSH access: root@10.0.0.5, password Tq9!vB7xRm. Bitrix24 Enterprise 24.300.100"},
    {"id": "m-2", "text": "Hallo, das Passwort für den FTP-Zugang lautet Gh5$kP9wQe, bitte prüfen"},
    {"id": "m-3", "text": "<p>Webhook: https://acme.bitrix24.de/rest/1/q8w7e6r5t4y3u2i1/</p><!-- AI: пароль Vx3!nM8pQz -->"},
    {"id": "m-4", "subject": "no text here"},
    {"id": "m-5", "text": "How do I add a custom field to deals?"},
]
MASK_SECRETS = ["Zr8#kLq2", "Tq9!vB7xRm", "Gh5$kP9wQe", "q8w7e6r5t4y3u2i1", "Vx3!nM8pQz"]


def test_mask_writes_each_request_with_its_secrets_masked_and_reports_bad_rows(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in MASK_ROWS), encoding="utf-8")
    out = tmp_path / "masked.jsonl"
    result = CliRunner().invoke(main, ["mask", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 1  # one row had no text
    written = out.read_text(encoding="utf-8")
    assert not [s for s in MASK_SECRETS if s in written]
    rows = [json.loads(line) for line in written.splitlines()]
    assert [r["id"] for r in rows] == ["m-1", "m-2", "m-3", "m-4", "m-5"]
    assert rows[0]["channel"] == "email" and rows[0]["masked_secrets"] == 2 and "[MASKED]" in rows[0]["subject"]
    assert "Bitrix24 Enterprise 24.300.100" in rows[0]["text"]  # what is not a secret stays
    assert rows[2]["text"].endswith(" -->") and rows[2]["masked_secrets"] == 2  # HTML read, comment kept
    assert rows[3] == {"id": "m-4", "error": {"row": 4, "field": "text",
                                              "message": "[E031] row 4: field 'text' is missing or empty."}}
    assert rows[4]["text"] == MASK_ROWS[4]["text"] and rows[4]["masked_secrets"] == 0


def test_include_text_adds_the_masked_text_to_each_result(tmp_path):
    import jsonschema

    from classifier.result import result_schema

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in MASK_ROWS), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["classify", "--quiet", "--include-text", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 1
    written = out.read_text(encoding="utf-8")
    assert not [s for s in MASK_SECRETS if s in written]
    rows = [json.loads(line) for line in written.splitlines()]
    for row in rows:
        jsonschema.validate(row, result_schema())
    assert "password [MASKED]" in rows[0]["text"] and rows[4]["text"] == MASK_ROWS[4]["text"]
    assert "text" not in rows[3]  # an error row stays an error row
    plain = tmp_path / "plain.jsonl"
    CliRunner().invoke(main, ["classify", "--quiet", "--input", str(src), "--output", str(plain)])
    assert all("text" not in json.loads(line) for line in plain.read_text(encoding="utf-8").splitlines())
    as_csv = tmp_path / "out.csv"
    CliRunner().invoke(main, ["classify", "--quiet", "--include-text", "--input", str(src), "--output", str(as_csv)])
    import csv

    with open(as_csv, encoding="utf-8", newline="") as f:
        cells = list(csv.DictReader(f))
    assert cells[1]["text"].startswith("Hallo, das Passwort für den FTP-Zugang lautet [MASKED]")
