"""Worker processes (``intake classify --jobs N``, classifier/parallel.py): the same bytes as
one process in every output format, rows numbered as one process numbers them, input
read only a few chunks ahead, spawned workers that load the classifier themselves, and
a worker that dies ending the run with an error."""
from __future__ import annotations

import json
import os
from itertools import count, islice
from pathlib import Path

import pytest

from classifier import batch, parallel
from classifier.classify import Classifier
from classifier.cli import main
from classifier.errors import IntakeError
from classifier.request import NumberedRecord

ROOT = Path(__file__).resolve().parent.parent


def corpus_requests(n: int) -> list[dict]:
    """``n`` requests cycling the labelled corpus (every language, with their fields), distinct ids."""
    rows = [json.loads(line) for line in (ROOT / "data" / "tickets.jsonl").read_text(encoding="utf-8").splitlines()]
    out = []
    for i in range(n):
        src = rows[(i * 7) % len(rows)]
        record = {k: src[k] for k in ("text", "subject", "channel", "attachments", "product") if k in src}
        out.append({"id": f"r-{i:05d}", **record})
    return out


def batch_file(path: Path, n: int) -> Path:
    """A JSONL batch of ``n`` corpus requests with broken rows at and around chunk boundaries
    and a row without an id (its id is its row number)."""
    lines = [json.dumps(r, ensure_ascii=False) for r in corpus_requests(n)]
    lines[0] = "not json at all"
    lines[parallel.CHUNK - 1] = json.dumps({"id": "edge", "text": ""})
    lines[parallel.CHUNK] = json.dumps({"id": "fax", "text": "Portal down", "channel": "fax"})
    lines[parallel.CHUNK + 1] = json.dumps({"text": "The kanban board of tasks is empty for every user."})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_jobs_2_writes_the_same_bytes_and_summary_as_jobs_1(runner, tmp_path, fmt):
    source = batch_file(tmp_path / "in.jsonl", parallel.CHUNK * 2 + 50)
    runs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out-{jobs}.{fmt}"
        run = runner.invoke(main, ["classify", "--jobs", jobs, "--input", str(source), "--output", str(out)])
        assert run.exit_code == 1, run.output  # three rows failed
        runs[jobs] = (out.read_bytes(), run.stderr)
    assert runs["2"] == runs["1"]
    stderr = runs["2"][1]
    assert f"classified {parallel.CHUNK * 2 + 47} rows, 3 failed" in stderr
    assert f"failed row {parallel.CHUNK}: [E031] row {parallel.CHUNK}: field 'text' is missing or empty." in stderr
    if fmt == "jsonl":
        rows = [json.loads(line) for line in runs["2"][0].decode("utf-8").splitlines()]
        assert rows[0]["id"] is None and rows[0]["error"]["row"] == 1
        assert rows[parallel.CHUNK + 1]["id"] == str(parallel.CHUNK + 2)  # no id: its row number
        assert len({r["language"] for r in rows if "language" in r}) == 7


def test_rows_are_numbered_as_one_process_numbers_them(loaded):
    """Plain records are numbered from 1; a NumberedRecord keeps its number and the count goes on from it."""
    records = [{"text": "How do I add a custom field to deals?"}, NumberedRecord(10, {"text": "Portal down"}),
               {"text": ""}]
    expected = [r.to_dict() for r in loaded.classify_many(records)]
    got = [e.result for e in parallel.classify_in_processes(loaded, records, 2)]
    assert [(r.id, r.row) for r in got] == [("1", 1), ("10", 10), ("11", 11)]
    assert [json.loads(e.data) for e in parallel.classify_in_processes(loaded, records, 2)] == expected


def test_the_input_is_read_only_a_few_chunks_ahead(loaded):
    """Memory stays flat: the parent hands out chunks as workers finish them, not the whole input."""
    taken = count()

    def endless():
        for i in taken:
            yield {"id": f"e-{i}", "text": "How do I add a custom field to deals?"}

    results = parallel.classify_in_processes(loaded, endless(), 2)
    first = list(islice(results, parallel.CHUNK + 1))
    results.close()
    assert [r.result.id for r in first[:2]] == ["e-0", "e-1"]
    read = next(taken)
    assert read <= parallel.CHUNK * (2 * parallel.AHEAD + 2), read


def test_spawned_workers_load_the_classifier_themselves():
    clf = Classifier.load(use_model=False)
    records = [r for r in corpus_requests(60) if r.get("product") != "self_hosted"][:40]
    encode = batch.Encoder("csv")
    expected = [encode(r).data for r in clf.classify_many(records)]
    got = [e.data for e in parallel.classify_in_processes(clf, records, 2, encode=encode, start_method="spawn")]
    assert got == expected


def test_a_worker_that_dies_ends_the_run_with_an_error(loaded, monkeypatch):
    real = Classifier.classify_many

    def dies_on_row_600(self, records, *args, **kw):  # as the kernel's OOM killer would end it
        if any(r.row == 600 for r in records):
            os._exit(9)
        return real(self, records, *args, **kw)

    monkeypatch.setattr(Classifier, "classify_many", dies_on_row_600)  # the forked workers inherit it
    records = [{"id": f"d-{i}", "text": "Deals do not open since the update."} for i in range(parallel.CHUNK * 3)]
    with pytest.raises(IntakeError, match=r"^\[E049\] A worker process stopped before it finished its rows"):
        list(parallel.classify_in_processes(loaded, records, 2))


def test_jobs_auto_is_one_per_core(runner, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "text": "How do I add a custom field to deals?"}) + "\n", encoding="utf-8")
    run = runner.invoke(main, ["classify", "--quiet", "--jobs", "auto", "--input", str(source)])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["id"] == "a"
