"""The ``intake`` command: readable and JSON output, batch input from a file or
stdin, JSONL/CSV output, exit statuses, the schema command, and that every
command has help and is documented in README.md."""
from __future__ import annotations

import csv
import io
import json
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


@pytest.fixture(scope="module")
def loaded() -> Classifier:
    return Classifier.load()


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


def test_output_jsonl_file_and_some_failed_rows_exit_1(runner, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD, extra=b'{"id": "c-3", "text": ""}\n')
    out = tmp_path / "out.jsonl"
    run = runner.invoke(main, ["classify", "--input", str(source), "--output", str(out)])
    assert run.exit_code == 1
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["c-1", "c-2", "c-3"]
    assert rows[2]["error"]["message"] == "[E031] row 3: field 'text' is missing or empty."
    assert "classified 2 rows, 1 failed" in run.output
    assert "failed row 3: [E031] row 3: field 'text' is missing or empty." in run.output


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
                                  ["classify", "--input", "x.jsonl", "--output-format", "xml"]])
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
