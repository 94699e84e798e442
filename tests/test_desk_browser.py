"""The desk in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against ``intake serve`` on SQLite and on PostgreSQL.

An agent's session from end to end: requests come in (``intake ingest`` on SQLite,
``POST /v1/tickets`` on both), the agent logs in with the keyboard, reads the queue (overdue
first), filters it, opens a request, sees the marked evidence, corrects a label, edits
and copies the reply, marks it sent; the correction is then in the store
(``GET /v1/tickets``) and in ``intake feedback export``. Screenshots of the queue and
of a request page go to ``tests/artifacts/`` (git-ignored).

Under CI=true a missing Chromium, Playwright or PostgreSQL fails; elsewhere those tests
are skipped with the reason. One server per database, a handful of requests.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import httpx
import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the browser fixture says what is missing
    expect = None

from test_service import serving
from test_store import empty_database, postgres_url

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PROJECT = Path(__file__).resolve().parent.parent
API_KEY = "browser-test-key"
AGENT, PASSWORD = "alice", "correct horse battery"
NOW = datetime.now(timezone.utc)
#: Ingested from a file: an old feature request (overdue by now), a German export bug.
INGESTED = [
    {"id": "B-100", "channel": "live_chat", "received_at": (NOW - timedelta(hours=80)).isoformat(),
     "text": "Could you add a Kanban view to the lists module? We have the Standard plan, portal zoo-shop.bitrix24.com"},
    {"id": "B-101", "channel": "email", "received_at": (NOW - timedelta(hours=2)).isoformat(),
     "subject": "Excel-Export leer",
     "text": "Hallo, seit dem Update auf 24.300 ist der Excel-Export der Deals leer: CRM > Deals > Export > Excel. "
             "Portal crm.kobra-tools.de, Business-Lizenz. Viele Grüße, Jana"},
]
#: Posted to the API: a portal down for everybody, with a password in it.
POSTED = {"id": "B-102", "subject": "URGENT portal down", "channel": "webform",
          "text": "Hi support,\n\nsince 06:40 our intranet https://portal.hansen-logistik.de only shows \"502 Bad "
                  "Gateway\" for everybody, nobody can log in and the warehouse can't see their tasks. "
                  "Bitrix24 Enterprise, main 24.300.100. Admin login: admin password: Qw7!mzP2\n\nTorben Hansen, IT"}


def needed(what: str, reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {what} is missing: {reason}")
    pytest.skip(f"{what} is missing: {reason}")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        needed("Playwright", 'pip install -e ".[test]" installs it')
    if not Path(CHROMIUM).exists():
        needed("Chromium", f"{CHROMIUM} (Debian's chromium package; .ci/run installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def intake(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "classifier.cli", *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=PROJECT, timeout=300)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def desk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A server on a fresh database with agent alice and three requests in it."""
    root = tmp_path_factory.mktemp(f"desk-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'desk.db'}"
    else:
        url = postgres_url()
        empty_database(url)
    env = {**os.environ, "INTAKE_DATABASE_URL": url, "INTAKE_API_KEYS": API_KEY}
    added = intake("users", "add", AGENT, "--password-stdin", env=env, stdin=PASSWORD + "\n")
    assert added.returncode == 0 and added.stdout.strip() == f"added desk user {AGENT}", added.stderr
    if request.param == "sqlite":  # from a file; on PostgreSQL through the API (below), which takes less time
        batch = root / "incoming.jsonl"
        batch.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in INGESTED), encoding="utf-8")
        ingested = intake("ingest", "--input", str(batch), env=env)
        assert ingested.returncode == 0, ingested.stderr
        assert "stored 2 new requests, 0 already stored, 0 failed" in ingested.stderr
    before = {k: os.environ.get(k) for k in ("INTAKE_DATABASE_URL", "INTAKE_API_KEYS")}
    os.environ.update({"INTAKE_DATABASE_URL": url, "INTAKE_API_KEYS": API_KEY})  # the server inherits them
    try:
        with serving([], root / "server.log") as base:
            for body in [POSTED] + (INGESTED if request.param == "postgresql" else []):
                posted = httpx.post(base + "/v1/tickets", json=body, headers={"authorization": f"Bearer {API_KEY}"},
                                    timeout=60)
                assert posted.status_code == 201, posted.text
            yield {"url": base, "db": request.param, "env": env, "root": root, "log": root / "server.log"}
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_an_agent_works_a_request_from_the_queue_to_the_sent_reply(browser, desk: dict) -> None:
    base, db = desk["url"], desk["db"]
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, base_url=base)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    try:
        # anonymous: the login page; log in with the keyboard alone
        page.goto("/desk")
        assert page.url == f"{base}/desk/login?next=%2Fdesk"
        expect(page.locator("#name")).to_be_focused()  # autofocus: typing goes straight to the name
        page.keyboard.type(AGENT)
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{base}/desk")

        # the queue: soonest due first, the overdue feature request on top and marked
        rows = page.locator("table.queue tbody tr")
        assert rows.count() == 3
        assert rows.nth(0).get_attribute("data-id") == "B-100"
        assert "is-overdue" in rows.nth(0).get_attribute("class")
        assert rows.nth(0).locator(".badge.overdue").inner_text() == "overdue"
        assert page.locator("#counts").inner_text() == "3 requests, 1 overdue"
        page.screenshot(path=str(ARTIFACTS / f"desk-queue-{db}.png"), full_page=True)
        page.select_option("select[name=language]", "de")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**language=de**")  # the filter is a GET form: read the rows of the page it loads
        assert [r.get_attribute("data-id") for r in page.locator("table.queue tbody tr").all()] == ["B-101"]
        page.goto("/desk")

        # a request page: the evidence marked in the masked text
        page.locator("tr[data-id=B-102] a").click()
        page.wait_for_url(f"{base}/desk/tickets/*")
        text = page.locator("#request-text")
        assert "Qw7!mzP2" not in page.content() and "password: [MASKED]" in text.inner_text()
        marked = text.locator("mark").all_inner_texts()
        assert "nobody can log in" in marked and "https://portal.hansen-logistik.de" in marked
        assert "severity.critical.nobody_can_log_in" in text.locator("mark", has_text="nobody can log in").get_attribute("title")
        assert "Bitrix24 product runtime and operation errors" in page.locator(".clauses").inner_text()
        assert "steps to reproduce" in page.locator(".checklist .missing").inner_text()

        # correct the severity (critical -> high) and the clause within the category
        page.select_option("#f-severity", "high")
        page.select_option("#f-clause", "3.4.in.2")
        page.get_by_role("button", name="Save correction").click()
        page.wait_for_url("**saved=labels**")
        assert page.locator(".saved").inner_text() == "Correction saved."
        history = page.locator("#corrections tbody").inner_text()
        assert "severity" in history and "high" in history and AGENT in history

        # edit the reply, save it, copy it
        reply = page.locator("#reply-text")
        edited = reply.input_value().replace("Hello,", "Hello Torben,", 1)
        assert edited != reply.input_value()
        reply.fill(edited)
        page.get_by_role("button", name="Save reply").click()
        page.wait_for_url("**saved=reply**")
        assert page.locator("#reply-text").input_value() == edited.replace("\r\n", "\n")
        page.get_by_role("button", name="Copy reply").click()
        expect(page.locator("#copy-note")).to_have_text("Reply copied.")  # the clipboard answers in its own time
        assert page.evaluate("navigator.clipboard.readText()") == page.locator("#reply-text").input_value()
        page.locator("#request-text").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"desk-request-{db}.png"), full_page=True)
        page.get_by_role("button", name="Reply sent").click()
        page.wait_for_url("**saved=status**")
        assert page.locator("#status").inner_text() == "reply sent"
    finally:
        context.close()

    # the correction is stored with who made it, and exported for training
    ticket = httpx.get(f"{base}/v1/tickets/B-102", headers={"authorization": f"Bearer {API_KEY}"}, timeout=30).json()
    fixes = {c["field"]: c for c in ticket["corrections"]}
    assert fixes["severity"]["old"] == "critical" and fixes["severity"]["new"] == "high"
    assert fixes["clause"]["new"] == "3.4.in.2" and fixes["severity"]["by"] == AGENT
    assert ticket["status"] == "reply_sent" and ticket["reply"].startswith("Hello Torben,")
    out = desk["root"] / "corrections.csv"
    exported = intake("feedback", "export", "--output", str(out), env=desk["env"])
    assert exported.returncode == 0, exported.stderr
    with open(out, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["id"], r["severity"], r["clause"], r["corrected_by"]) for r in rows] == [("B-102", "high", "3.4.in.2", AGENT)]
    log = desk["log"].read_text(encoding="utf-8")
    assert f"who={AGENT} action=correct ticket=B-102 fields=clause,severity" in log
    assert "Qw7!mzP2" not in log and "Qw7!mzP2" not in out.read_text(encoding="utf-8")
