"""The library API: Classifier.load(), classify, classify_many, classify_frame,
results valid against the published JSON Schema, and a 10,000-row batch with
malformed rows through the CLI."""
from __future__ import annotations

import gc
import itertools
import json
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
from click.testing import CliRunner

from classifier import spec
from classifier.classify import Classifier
from classifier.cli import main
from classifier.dataset import DEFAULT_DATA
from classifier.request import NumberedRecord, Request
from classifier.result import Result, result_schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "data" / "examples.jsonl"

HACKED = ("Our site was hacked tonight: the home page shows a casino banner and there are unknown PHP "
          "files in /upload/. Please restore it!")
PAYMENT = ("We need a custom payment module for PayU with recurring billing in our online store. "
           "Can your developers write it?")
QUESTION = "How do I set working hours in open channels so that messages after 18:00 get an auto reply?"


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load()


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = result_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- load and classify
def test_load_defaults_to_the_bundled_model_and_rules(clf):
    assert clf.model is not None
    assert clf.manifest["targets"] == ["category", "clause", "severity"]
    assert len(clf.rules_digest) == 64
    assert set(clf.clause_texts) <= set(spec.CLAUSES)


def test_classify_accepts_text_mapping_and_request(clf):
    by_text = clf.classify(PAYMENT).to_dict()
    by_dict = clf.classify({"text": PAYMENT}).to_dict()
    by_request = clf.classify(Request(text=PAYMENT)).to_dict()
    assert by_text == by_dict == by_request
    assert by_text["id"] is None
    assert by_text["category"] == "development" and by_text["scope"] == "out_of_scope"


FORWARDED_REPORT = ("---------- Weitergeleitete Nachricht ---------\nVon: Anna Weber <anna@kunde.example>\n"
                    "Datum: 3. Juni 2024\n\nHallo, seit dem Update auf 24.300.0 zeigt https://portal.kunde.example "
                    "nur noch Fehler 500 beim Öffnen einer Deal-Karte. Wir haben die Edition Business.\n"
                    "1. Anmelden\n2. CRM > Deals öffnen\n3. eine Karte anklicken")


@pytest.mark.parametrize(("cover", "language"), [
    # replied to in the cover note's language; the rules read the German report in German
    ("FYI, see our client's message below. Could you help them?", "en"),
    ("FYI, see below", "de"),  # too short to tell: the forwarded message's
])
def test_a_report_forwarded_under_a_cover_note_is_read(clf, cover, language):
    result = clf.classify(f"{cover}\n\n{FORWARDED_REPORT}")
    assert result.language == language
    assert result.explanation["language"].get("rules_read", language) == "de"
    assert result.suggested_reply.startswith("Hello" if language == "en" else "Guten Tag")
    # the version, address, edition and steps are all in the forwarded message
    assert result.category in ("product_error", "updates") and result.missing_info == []
    fired = {r["id"] for r in result.explanation["rules"]}
    assert {"info.url.web_address", "info.version.product", "info.steps.list"} <= fired


def test_classify_echoes_the_id_and_reads_the_fields(clf):
    result = clf.classify({"id": "TS-512077", "text": QUESTION, "channel": "email", "attachments": ["error.bmp"]})
    assert result.id == "TS-512077"
    assert {"unofficial_channel", "attachment_format"} <= set(result.flags)


def test_classify_refuses_a_request_without_text(clf):
    from classifier.errors import InputError

    with pytest.raises(InputError, match=r"^\[E031\] row 1: field 'text' is missing or empty\.$"):
        clf.classify({"id": "a", "text": "   "})


# ---------------------------------------------------------------- classify_many
def test_classify_many_streams_a_generator_lazily(clf):
    consumed = []

    def requests():
        # long enough to show laziness, bounded so an eager reader fails instead of eating memory
        for i, text in enumerate(itertools.islice(itertools.cycle([HACKED, PAYMENT, QUESTION]), 1000)):
            consumed.append(i)
            yield {"id": f"req-{i}", "text": text}

    stream = clf.classify_many(requests(), batch_size=4)
    first = next(stream)
    assert first.id == "req-0"
    assert len(consumed) <= 4  # only the first batch was read
    more = list(itertools.islice(stream, 5))
    assert [r.id for r in more] == [f"req-{i}" for i in range(1, 6)]
    assert len(consumed) <= 8


def test_classify_many_keeps_input_order_and_numbers_rows_without_id(clf):
    records = [{"id": "a-1", "text": HACKED}, {"text": PAYMENT}, {"id": "", "text": QUESTION},
               {"text": ""}, QUESTION, Request(text=HACKED, id="r-6")]
    results = list(clf.classify_many(records, batch_size=2))
    assert [r.id for r in results] == ["a-1", "2", "3", "4", "5", "r-6"]
    assert [r.ok for r in results] == [True, True, True, False, True, True]
    assert results[3].error == {"row": 4, "field": "text",
                                "message": "[E031] row 4: field 'text' is missing or empty."}
    assert results[0].category == results[5].category and "urgent_recovery" in results[0].flags
    assert results[1].category == "development"


def test_classify_many_pauses_the_collector_per_batch_and_restores_it(clf, monkeypatch):
    import classifier.classify as classify_module

    seen = []
    real_decide = classify_module.decide

    def recording_decide(analysed, probas):
        seen.append(gc.isenabled())
        return real_decide(analysed, probas)

    monkeypatch.setattr(classify_module, "decide", recording_decide)
    assert gc.isenabled()
    results = list(clf.classify_many([HACKED, PAYMENT, QUESTION], batch_size=2))
    assert [r.ok for r in results] == [True, True, True]
    assert seen == [False, False, False]  # off while a batch is worked out
    assert gc.isenabled()                 # and on again once it is handed on

    gc.disable()  # a caller that keeps it off finds it off
    try:
        list(clf.classify_many([QUESTION]))
        assert not gc.isenabled()
    finally:
        gc.enable()

    def failing_decide(analysed, probas):
        raise RuntimeError("decide failed")

    monkeypatch.setattr(classify_module, "decide", failing_decide)
    assert [r.ok for r in clf.classify_many([QUESTION, PAYMENT])] == [False, False]
    assert gc.isenabled()  # restored when the batch fails too
    with pytest.raises(RuntimeError, match="decide failed"):
        clf.classify(QUESTION)
    assert gc.isenabled()


def test_classify_many_same_answers_as_classify(clf):
    texts = [HACKED, PAYMENT, QUESTION]
    one_by_one = [clf.classify({"id": str(i), "text": t}).to_dict() for i, t in enumerate(texts, 1)]
    batched = [r.to_dict() for r in clf.classify_many(texts)]
    assert batched == one_by_one


def test_classify_many_keeps_file_row_numbers(clf):
    from classifier.errors import InputError

    records = [NumberedRecord(3, {"text": PAYMENT}), NumberedRecord(7, InputError("[E036] row 7: not a JSON object.", row=7)),
               NumberedRecord(8, {"text": QUESTION, "id": "q"})]
    results = list(clf.classify_many(records))
    assert [r.id for r in results] == ["3", None, "q"]
    assert results[1].error == {"row": 7, "field": None, "message": "[E036] row 7: not a JSON object."}


E039 = ("[E039] row {row}: could not be classified ({detail}); the other rows were. If every row fails "
        "like this, check the rules folder with: intake rules check")


def corpus_requests(n: int) -> list[dict]:
    """``n`` requests from the corpus, with their fields."""
    fields = ("id", "text", "subject", "channel", "attachments", "product")
    rows = [r for r in read_jsonl(DEFAULT_DATA) if len(r["text"]) <= 400][:n]
    return [{k: r[k] for k in fields if k in r} for r in rows]


def test_classify_many_a_row_whose_reply_fails_is_its_error_and_the_others_are_classified(clf, monkeypatch):
    import classifier.classify as classify_module

    records = corpus_requests(40)
    poisoned: list = []  # the decision of request 18, whose reply fails
    real_decide, real_reply = classify_module.decide, classify_module.write_reply

    def decide(analysed, probas):
        d = real_decide(analysed, probas)
        if analysed.request.id == records[17]["id"]:
            poisoned.append(d)
        return d

    def write_reply(decision, templates, clause_texts):  # as a template {severity:d} fails on its value
        if any(decision is d for d in poisoned):
            raise ValueError("Unknown format code 'd' for object of type 'str'")
        return real_reply(decision, templates, clause_texts)

    monkeypatch.setattr(classify_module, "write_reply", write_reply)
    monkeypatch.setattr(classify_module, "decide", decide)
    expected = [r.to_dict() for r in clf.classify_many(records[:17] + records[18:], batch_size=16)]
    results = list(clf.classify_many(records, batch_size=16))
    assert [r.id for r in results] == [r["id"] for r in records]
    assert [r.ok for r in results].count(False) == 1
    assert results[17].error == {"row": 18, "field": None, "message": E039.format(
        row=18, detail="ValueError: Unknown format code 'd' for object of type 'str'")}
    assert [r.to_dict() for i, r in enumerate(results) if i != 17] == expected


def test_classify_many_a_row_that_breaks_its_whole_batch_fails_alone(clf, monkeypatch):
    records = corpus_requests(40)
    poisoned = records[25]["text"]
    real = clf.analyser.analyse

    def analyse(requests):
        requests = list(requests)
        if any(r.text == poisoned for r in requests):
            raise MemoryError("spaCy ran out of memory on this text")
        return real(requests)

    monkeypatch.setattr(clf.analyser, "analyse", analyse)
    results = list(clf.classify_many(records, batch_size=16))
    assert [r.id for r in results] == [r["id"] for r in records]
    assert [i for i, r in enumerate(results) if not r.ok] == [25]
    assert results[25].error["message"] == E039.format(row=26,
                                                       detail="MemoryError: spaCy ran out of memory on this text")
    monkeypatch.undo()
    assert results[16].to_dict() == clf.classify(records[16]).to_dict()  # worked out alone, the same answer


def test_classify_frame_a_row_whose_classification_fails_gets_the_error(clf, monkeypatch):
    import classifier.classify as classify_module

    real_decide = classify_module.decide

    def decide(analysed, probas):
        if "PayU" in analysed.request.text:
            raise KeyError("payment")
        return real_decide(analysed, probas)

    monkeypatch.setattr(classify_module, "decide", decide)
    df = pd.DataFrame({"ticket": ["T1", "T2", "T3"], "body": [HACKED, PAYMENT, QUESTION]})
    out = clf.classify_frame(df, text_col="body")
    assert out.loc[1, "error"] == {"row": 2, "field": None, "message": E039.format(row=2, detail="KeyError: 'payment'")}
    assert out["category"].notna().tolist() == [True, False, True]


# ---------------------------------------------------------------- classify_frame
def test_classify_frame_adds_result_columns(clf):
    df = pd.DataFrame({"ticket": ["T1", "T2", "T3"], "body": [HACKED, PAYMENT, None],
                       "channel": ["webform", "email", "webform"]}, index=[10, 11, 12])
    out = clf.classify_frame(df, text_col="body")
    assert list(out.index) == [10, 11, 12]
    assert list(out.columns[:3]) == ["ticket", "body", "channel"]
    for column in ("category", "scope", "clauses", "severity", "response_time_hours", "missing_info",
                   "delay_reasons", "flags", "confidence", "needs_review", "suggested_reply", "error"):
        assert column in out.columns
    assert out.loc[11, "category"] == "development"
    assert "unofficial_channel" in out.loc[11, "flags"]
    assert out.loc[12, "error"]["message"] == "[E031] row 3: field 'text' is missing or empty."
    assert list(df.columns) == ["ticket", "body", "channel"]  # the input is not changed


# ---------------------------------------------------------------- schema
def test_every_example_result_validates(clf, validator):
    records = read_jsonl(EXAMPLES)
    results = [r.to_dict() for r in clf.classify_many(records)]
    assert [r["id"] for r in results] == [r["id"] for r in records]
    for result in results:
        validator.validate(result)


def test_every_test_split_result_validates(clf, validator):
    fields = ("id", "text", "subject", "channel", "attachments", "product")
    records = [{k: r[k] for k in fields if k in r} for r in read_jsonl(DEFAULT_DATA) if r["split"] == "test"]
    assert len(records) > 200
    results = [r.to_dict() for r in clf.classify_many(records)]
    assert len(results) == len(records)
    for result in results:
        assert "error" not in result, result
        validator.validate(result)


def test_schema_rejects_a_broken_result(clf, validator):
    good = clf.classify(QUESTION).to_dict()
    validator.validate(good)
    for key, value in (("severity", "urgent"), ("response_time_hours", 2), ("flags", ["vip"]),
                       ("confidence", 1.5), ("clauses", [])):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**good, key: value})
    validator.validate(Result(id="7", error={"row": 7, "field": None, "message": "x"}).to_dict())


# ---------------------------------------------------------------- 10,000 rows with 5 bad ones, via the CLI
BAD_ROWS = {
    1234: b'{"id": "bad-json", "text": "the portal is down\n',       # not JSON: cut inside a string
    2500: b'{"id": "no-text", "subject": "portal down"}\n',           # no text
    5001: b'{"id": "wrong-type", "text": ["portal", "down"]}\n',      # text is a list
    7777: b'{"id": "bytes", "text": "Gr\xfc\xdfe, das Portal ist weg"}\n',  # Latin-1, not UTF-8
    9999: b'["portal down", "please help"]\n',                         # an array, not an object
}
BAD_MESSAGES = {
    1234: "[E030] row 1234: not valid JSON: Invalid control character at column 47",
    2500: "[E031] row 2500: field 'text' is missing or empty.",
    5001: "[E032] row 5001: field 'text' must be a string, got list.",
    7777: "[E033] row 7777: bytes are not valid UTF-8: invalid start byte",
    9999: "[E036] row 9999: not a JSON object.",
}


def test_ten_thousand_rows_with_five_bad_ones_through_the_cli(tmp_path):
    # realistic requests from the corpus; the shorter ones keep this one run near 30 s
    sources = [r for r in read_jsonl(DEFAULT_DATA) if len(r["text"]) <= 300]
    lines = []
    for row in range(1, 10_001):
        if row in BAD_ROWS:
            lines.append(BAD_ROWS[row])
            continue
        src = sources[(row - 1) % len(sources)]
        record = {"id": f"bulk-{row:05d}", "text": src["text"]}
        for key in ("subject", "channel", "attachments", "product"):
            if key in src:
                record[key] = src[key]
        lines.append(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
    source = tmp_path / "requests.jsonl"
    source.write_bytes(b"".join(lines))
    out = tmp_path / "results.jsonl"

    run = CliRunner().invoke(main, ["classify", "--input", str(source), "--output", str(out)])

    assert run.exit_code == 1, run.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 10_000
    errors = {i: r for i, r in enumerate(rows, 1) if "error" in r}
    assert sorted(errors) == sorted(BAD_ROWS)
    for row, message in BAD_MESSAGES.items():
        assert errors[row]["error"]["row"] == row
        assert errors[row]["error"]["message"] == message
    assert errors[2500]["id"] == "no-text" and errors[5001]["id"] == "wrong-type"
    good = [r for r in rows if "error" not in r]
    assert len(good) == 9_995
    assert [r["id"] for r in good] == [f"bulk-{i:05d}" for i in range(1, 10_001) if i not in BAD_ROWS]
    assert "classified 9995 rows, 5 failed" in run.output
