"""The agents' desk in process (classifier/desk.py, classifier/access.py): login, CSRF,
corrections through the forms, the evidence marked in the text, no secret anywhere,
and the way back to training (intake feedback export, train, evaluate).

The real browser is tests/test_desk_browser.py; here the app runs in process
(fastapi.testclient) on the real classifier, once per module.
"""
from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from classifier import dataset
from classifier.access import bearer_owner, hash_password, key_owner, verify_password
from classifier.classify import Classifier
from classifier.cli import main
from classifier.desk import highlighted
from classifier.service import create_app
from classifier.store import Store, corrections, settings, tickets, users

from test_store import url  # noqa: F401 - the SQLite / PostgreSQL database fixture

API_KEY = "desk-test-key"
AUTH = {"authorization": f"Bearer {API_KEY}"}
PASSWORD = "correct horse battery"
CORPUS = yaml.safe_load((Path(__file__).resolve().parent / "fixtures" / "credentials.yaml").read_text(encoding="utf-8"))
DOWN = {"id": "D-1", "subject": "portal down since 06:40", "channel": "webform",
        "text": "Hi support,\n\nsince 06:40 our intranet https://portal.hansen-logistik.de only shows \"502 Bad "
                "Gateway\" for everybody, nobody can log in. Bitrix24 Enterprise, main 24.300.100.\nTorben"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load()


@pytest.fixture()
def desk(url: str, clf: Classifier):  # noqa: F811 - the fixture imported above
    """(client with the API key, store) of a fresh app on an empty database with user alice."""
    store = Store.open(url)
    store.add_user("alice", hash_password(PASSWORD))
    with TestClient(create_app(clf, api_keys=[API_KEY], store=store)) as client:
        yield client, store
    store.close()


def login(client: TestClient, name: str = "alice", password: str = PASSWORD):
    page = client.get("/desk/login")
    token = CSRF.search(page.text).group(1)
    return client.post("/desk/login", data={"csrf": token, "name": name, "password": password, "next": "/desk"},
                       follow_redirects=False)


def csrf_of(client: TestClient, path: str) -> str:
    return CSRF.search(client.get(path).text).group(1)


def test_passwords_are_hashed_with_a_salt_and_api_keys_named_without_the_key() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$32768$8$1$") and PASSWORD not in stored
    assert stored != hash_password(PASSWORD)  # a fresh salt each time
    assert verify_password(PASSWORD, stored) and not verify_password("correct horse", stored)
    assert not verify_password(PASSWORD, None) and not verify_password(PASSWORD, "md5$abc")
    assert bearer_owner(f"Bearer {API_KEY}", ["other", API_KEY]) == key_owner(API_KEY)
    assert API_KEY not in key_owner(API_KEY)
    for header in (None, "", API_KEY, f"Basic {API_KEY}", "Bearer ", f"Bearer {API_KEY}x"):
        assert bearer_owner(header, [API_KEY]) is None


def test_the_desk_asks_for_a_login_and_refuses_wrong_passwords_and_forged_forms(desk) -> None:
    client, _ = desk
    first = client.get("/desk/tickets/1", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/desk/login?next=%2Fdesk%2Ftickets%2F1"
    wrong = login(client, password="not the password")
    assert wrong.status_code == 401 and "Wrong user name or password." in wrong.text
    assert login(client, name="mallory").status_code == 401
    forged = client.post("/desk/login", data={"csrf": "guessed", "name": "alice", "password": PASSWORD})
    assert forged.status_code == 403 and "[E078]" in forged.text
    ok = login(client)
    assert ok.status_code == 303 and ok.headers["location"] == "/desk"
    page = client.get("/desk")
    assert page.status_code == 200 and "signed in as <strong>alice</strong>" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    client.post("/desk/logout", data={"csrf": CSRF.search(page.text).group(1)})
    assert client.get("/desk", follow_redirects=False).status_code == 303


def test_an_agent_corrects_labels_edits_the_reply_and_closes_through_the_forms(desk) -> None:
    client, store = desk
    assert client.post("/v1/tickets", json=DOWN, headers=AUTH).status_code == 201
    login(client)
    seq = store.get_ticket("D-1")["seq"]
    path = f"/desk/tickets/{seq}"
    page = client.get(path)
    assert page.status_code == 200
    # the evidence: each fired rule's words marked in the text, titled with the rule id
    marks = re.findall(r'<mark title="([^"]+)"[^>]*>([^<]+)</mark>', page.text)
    assert ("severity.critical.nobody_can_log_in" in " ".join(t for t, _ in marks))
    assert any(words == "nobody can log in" for _, words in marks)
    assert "Bitrix24 product runtime and operation errors" in page.text  # the clause's SLA text
    assert "steps to reproduce <strong>— ask the customer</strong>" in page.text
    token = CSRF.search(page.text).group(1)
    no_token = client.post(f"{path}/labels", data={"category": "general"})
    assert no_token.status_code == 403 and store.get_ticket("D-1")["corrections"] == []
    bad = client.post(f"{path}/labels", data={"csrf": token, "category": "general", "clause": "3.4.in.1",
                                              "severity": "critical"})
    assert bad.status_code == 422 and "[E075] Clause 3.4.in.1 belongs to product_error" in bad.text
    saved = client.post(f"{path}/labels", data={"csrf": token, "category": "product_error", "clause": "3.4.in.1",
                                                "severity": "high", "missing_info": ["steps_to_reproduce"],
                                                "flags": ["urgent_recovery"]}, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == f"{path}?saved=labels#labels"
    ticket = store.get_ticket("D-1")
    assert ticket["labels"]["severity"] == "high" and ticket["corrections"][0]["by"] == "alice"
    assert "Correction saved." in client.get(f"{path}?saved=labels").text
    client.post(f"{path}/reply", data={"csrf": token, "reply": "Hello Torben,\n\nwe are on it."})
    client.post(f"{path}/status", data={"csrf": token, "status": "reply_sent"})
    ticket = store.get_ticket("D-1")
    assert ticket["reply"] == "Hello Torben,\n\nwe are on it." and ticket["status"] == "reply_sent"
    api = client.get("/v1/tickets/D-1", headers=AUTH).json()
    assert [c["field"] for c in api["corrections"]] == ["severity"] and api["labels"]["severity"] == "high"


def test_marks_escape_the_text_merge_overlaps_and_match_whole_words() -> None:
    rules = [{"id": "r.version", "matched": ["main 24.300.100"]}, {"id": "r.product", "matched": ["24.300"]},
             {"id": "r.down", "matched": ["down"]}]
    out = str(highlighted("<b>downtime</b> & the site is down, main 24.300.100", rules))
    assert out == ('&lt;b&gt;downtime&lt;/b&gt; &amp; the site is <mark title="r.down" data-rules="r.down">down</mark>, '
                   '<mark title="r.version, r.product" data-rules="r.version r.product">main 24.300.100</mark>')


@pytest.mark.parametrize("url", ["sqlite"], indirect=True)
def test_no_secret_of_the_credential_corpus_reaches_the_database_the_desk_or_the_logs(
        desk, caplog: pytest.LogCaptureFixture) -> None:
    client, store = desk
    entries = CORPUS["secrets"]
    with caplog.at_level(logging.DEBUG):
        for i, entry in enumerate(entries):
            r = client.post("/v1/tickets", json={"id": f"C-{i}", "subject": entry["text"][:80], "text": entry["text"],
                                                 "attachments": ["screen.bmp"]}, headers=AUTH)
            assert r.status_code == 201, r.text
        login(client)
        pages = [client.get("/desk?status=all").text]
        for i in range(len(entries)):
            seq = store.get_ticket(f"C-{i}")["seq"]
            page = client.get(f"/desk/tickets/{seq}")
            token = CSRF.search(page.text).group(1)
            # an agent pastes the secret into the reply: masked too
            client.post(f"/desk/tickets/{seq}/reply", data={"csrf": token, "reply": entries[i]["text"]})
            pages += [page.text, client.get(f"/desk/tickets/{seq}").text, client.get(f"/v1/tickets/C-{i}", headers=AUTH).text]
    with store.engine.connect() as conn:
        rows = [json.dumps(dict(r._mapping), default=str, ensure_ascii=False)
                for table in (tickets, corrections, users, settings) for r in conn.execute(select(table))]
    stored = "\n".join(rows)
    shown = "\n".join(pages)
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert len(rows) >= len(entries) and "[MASKED]" in stored and len(caplog.records) >= len(entries)
    leaks = [(secret, where) for entry in entries for secret in entry["secrets"]
             for where, text in (("database", stored), ("desk", shown), ("logs", logged))
             if secret in text or html.escape(secret) in text]
    assert leaks == []


@pytest.mark.parametrize("url", ["sqlite"], indirect=True)  # the export on both databases: tests/test_store.py
def test_a_desk_correction_is_exported_trains_and_is_evaluated(desk, tmp_path: Path, monkeypatch) -> None:
    client, store = desk
    feature = {"id": "D-2", "channel": "live_chat",
               "text": "Could you add a Kanban view to the lists module? We have the Standard plan."}
    for body in (DOWN, feature):
        client.post("/v1/tickets", json=body, headers=AUTH)
    login(client)
    seq = store.get_ticket("D-2")["seq"]
    token = csrf_of(client, f"/desk/tickets/{seq}")
    client.post(f"/desk/tickets/{seq}/labels", data={"csrf": token, "category": "development",
                                                     "clause": "3.5.out.4", "severity": "low"})
    monkeypatch.setenv("INTAKE_DATABASE_URL", str(store.engine.url.render_as_string(hide_password=False)))
    out = tmp_path / "corrections.csv"
    exported = CliRunner().invoke(main, ["feedback", "export", "--output", str(out)])
    assert exported.exit_code == 0, exported.output
    assert exported.output.startswith(f"1 corrected requests written to {out}")
    rows = dataset.read_labelled(out)
    assert list(rows["id"]) == ["D-2"] and rows["clause"][0] == "3.5.out.4" and rows["corrected_by"][0] == "alice"
    # train on a small part of the corpus with the correction beside it: the correction is a training row
    corpus = dataset.read_labelled(dataset.DEFAULT_DATA)
    small = pd.concat([corpus[(corpus["split"] == s) & (corpus["category"] == c)].head(n)
                       for c in ("product_error", "general", "development") for s, n in (("train", 10), ("test", 2))])
    small_path = tmp_path / "small.jsonl"
    small_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in dataset.to_records(small)),
                          encoding="utf-8")
    model_dir = tmp_path / "model"
    trained = CliRunner().invoke(main, ["train", "--data", str(small_path), "--data", str(out), "--out", str(model_dir)])
    assert trained.exit_code == 0, trained.output
    manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["data"]["rows_train"] == 31 and manifest["data"]["rows_test"] == 6
    assert manifest["data"]["path"] == "small.jsonl + corrections.csv"
    assert [f["path"] for f in manifest["data"]["files"]] == ["small.jsonl", "corrections.csv"]
    evaluated = CliRunner().invoke(main, ["evaluate", "--data", str(out)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "| field (1 test rows) | rules only | model only (text only) | combined |" in evaluated.output


@pytest.mark.parametrize("url", ["sqlite"], indirect=True)
def test_ingest_stores_the_good_rows_and_reports_each_bad_one_with_its_row_number(url: str, tmp_path: Path,  # noqa: F811
                                                                                   monkeypatch) -> None:
    batch = tmp_path / "incoming.jsonl"
    batch.write_text("\n".join([
        json.dumps(DOWN),
        json.dumps({"text": "no id on this one"}),
        '{"id": "D-3", "text": "broken',
        json.dumps({"id": "D-4", "text": "Export to Excel is empty since 24.300", "received_at": "yesterday"}),
        json.dumps({"id": "D-5", "text": "How do I add a custom field to deals?", "received_at": "2026-03-02T08:15:00"}),
    ]) + "\n", encoding="utf-8")
    monkeypatch.setenv("INTAKE_DATABASE_URL", url)
    first = CliRunner().invoke(main, ["ingest", "--input", str(batch)])
    assert first.exit_code == 1
    lines = first.stderr.splitlines()
    assert lines[0] == "stored 2 new requests, 0 already stored, 3 failed"
    assert lines[1] == ("  failed [E072] row 2: field 'id': a ticket needs an id (the helpdesk's ticket number), so "
                        "that sending it again does not store it twice.")
    assert lines[2] == "  failed [E030] row 3: not valid JSON: Invalid control character at column 30"
    assert lines[3] == "  failed [E032] row 4: field 'received_at' must be an ISO 8601 time, got 'yesterday'."
    store = Store.open(url)
    assert store.get_ticket("D-5")["received_at"].isoformat() == "2026-03-02T08:15:00+00:00"
    assert store.get_ticket("D-1")["created_by"] == "cli:ingest" and store.get_ticket("D-4") is None
    again = CliRunner().invoke(main, ["ingest", "--input", str(batch)])
    assert again.stderr.splitlines()[0] == "stored 0 new requests, 2 already stored, 3 failed"
    store.close()
