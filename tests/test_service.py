"""The HTTP service (classifier/service.py).

Most tests talk over HTTP to the real server (``intake serve`` in a subprocess on a
free loopback port, started once for the module, on copies of the bundled model and
rules so parallel edits to rules/ cannot change answers mid-run) and compare its
results with the library's own ``Classifier`` on the same copies. A few in-process
tests (fastapi.testclient, fake classifiers) cover the error paths that a healthy
server never takes.
"""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import httpx
import jsonschema
import pytest
from fastapi.testclient import TestClient

from classifier import service
from classifier.classify import Classifier
from classifier.errors import IntakeError, ModelError
from classifier.model_files import DEFAULT_MODEL_DIR
from classifier.request import NumberedRecord, Request
from classifier.result import Result, result_schema
from classifier.rules import DEFAULT_RULES_DIR
from classifier.service import (MAX_BATCH, MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES, MAX_TEXT_CHARS, ClassifyWorker,
                                Row, ServiceBusy, ServiceLimits, create_app)

PORTAL_DOWN = {
    "id": "T-501", "subject": "URGENT portal down", "channel": "webform",
    "text": "Hi support,\n\nsince 06:40 our intranet https://portal.hansen-logistik.de only shows \"502 Bad "
            "Gateway\" for everybody, nobody can log in and the warehouse can't see their tasks. We didn't "
            "change anything on the server. Bitrix24 Enterprise, main 24.300.100.\n\nPlease help asap!\n"
            "Torben Hansen, IT"}
UPDATE_STUCK = {
    "id": "T-502", "subject": "update stuck at crm module", "channel": "webform",
    "text": "After running the platform update last night (Settings > Platform updates > Install recommended "
            "updates) the process stopped at the crm module with \"The system is being updated. Please try "
            "later.\" The site still works but the admin shows the update banner. We are on main 23.850.0, "
            "Business edition, site crm.kobra-tools.pl"}
OPEN_CHANNELS = {
    "channel": "live_chat",
    "text": "how do i set working hours in open channels so that messages after 18:00 get an auto reply? "
            "we have the Standard plan, portal zoo-shop.bitrix24.com"}
PASSWORD = "Qw7!mzP2"
WITH_PASSWORD = {
    "id": "T-777", "channel": "email",
    "text": "Hello, the deal list in our CRM at https://crm.nordwind-bau.de takes half a minute to open since "
            f"Monday. Please have a look yourselves, login: admin password: {PASSWORD} - Business edition, "
            "main 24.100.0."}
JSON = {"content-type": "application/json"}
#: The API key every server and app of this module accepts (from INTAKE_API_KEYS).
API_KEY = "test-key-5f2b9c"
AUTH = {"authorization": f"Bearer {API_KEY}"}
START_TIMEOUT_S = 90
PROJECT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: URL of a server started by ``serving`` -> its process.
PROCESSES: dict[str, subprocess.Popen] = {}
#: ``service.run`` with the limits given as JSON (what ``intake serve`` does, with other limits).
RUN_WITH_LIMITS = ("import json, sys; from classifier.service import ServiceLimits, run; "
                   "run(host='127.0.0.1', port=int(sys.argv[1]), model_dir=sys.argv[2], rules_dir=sys.argv[3], "
                   "limits=ServiceLimits(**json.loads(sys.argv[4])))")


@contextmanager
def serving(args: list[str], log_path: Path, limits: dict | None = None, open_files: int | None = None
            ) -> Iterator[str]:
    """Run ``intake serve ARGS`` (with ``limits``: ``service.run`` on ARGS model and rules
    dirs) on a free loopback port, at most ``open_files`` open, until /healthz answers;
    yield its URL."""
    port = free_port()
    if limits is None:
        cmd = [sys.executable, "-m", "classifier.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    else:
        cmd = [sys.executable, "-c", RUN_WITH_LIMITS, str(port), *args, json.dumps(limits)]

    def limit_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=PROJECT, preexec_fn=limit_files)
    url = f"http://127.0.0.1:{port}"
    PROCESSES[url] = proc
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /healthz within {START_TIMEOUT_S} s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        PROCESSES.pop(url, None)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module", autouse=True)
def api_key_in_environment() -> Iterator[None]:
    """INTAKE_API_KEYS for this module's servers (subprocesses inherit it) and apps."""
    before = os.environ.get("INTAKE_API_KEYS")
    os.environ["INTAKE_API_KEYS"] = API_KEY
    yield
    if before is None:
        del os.environ["INTAKE_API_KEYS"]
    else:
        os.environ["INTAKE_API_KEYS"] = before


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("service")
    shutil.copytree(DEFAULT_MODEL_DIR, root / "model")
    shutil.copytree(DEFAULT_RULES_DIR, root / "rules")
    return SimpleNamespace(model=root / "model", rules=root / "rules", log=root / "server.log", root=root)


@pytest.fixture(scope="module")
def server(dirs: SimpleNamespace) -> Iterator[str]:
    with serving(["--model", str(dirs.model), "--rules", str(dirs.rules)], dirs.log) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def local(dirs: SimpleNamespace) -> Classifier:
    """The library on the same model and rules as the server."""
    return Classifier.load(dirs.model, rules_dir=dirs.rules)


def log_lines(dirs: SimpleNamespace) -> list[str]:
    return dirs.log.read_text(encoding="utf-8", errors="replace").splitlines()


def access_line(dirs: SimpleNamespace, request_id: str) -> str:
    """The access-log line of one request (written just after its response, so wait for it)."""
    for _ in range(200):
        lines = [ln for ln in log_lines(dirs) if f"request_id={request_id} " in ln and "intake.access" in ln]
        if lines:
            break
        time.sleep(0.05)
    assert len(lines) == 1, (request_id, lines)
    return lines[0]


# -- endpoints -------------------------------------------------------------------------------
def test_healthz_names_the_loaded_model_rules_and_libraries(client: httpx.Client, dirs: SimpleNamespace,
                                                              local: Classifier) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    h = r.json()
    manifest = json.loads((dirs.model / "manifest.json").read_text())
    assert h["status"] == "ok"
    assert h["model"]["sha256"] == manifest["model_sha256"]
    assert h["model"]["id"] == f"{manifest['kind']}-{manifest['model_sha256'][:12]}"
    assert h["model"]["trained_at"] == manifest["trained_at"]
    assert h["rules"]["digest"] == local.rules_digest
    assert {"fastapi", "uvicorn", "scikit-learn", "spacy", "intake-classifier"} <= set(h["libraries"])
    assert h["limits"]["max_batch"] == MAX_BATCH and h["limits"]["max_body_bytes"] == MAX_BODY_BYTES


def test_classify_returns_the_library_result_valid_against_the_published_schema(
        client: httpx.Client, local: Classifier) -> None:
    schema = client.get("/v1/schema").json()
    assert schema == result_schema()
    for request in (PORTAL_DOWN, UPDATE_STUCK, OPEN_CHANNELS):
        r = client.post("/v1/classify", json=request)
        assert r.status_code == 200, r.text
        assert r.json() == local.classify(request).to_dict()
        jsonschema.validate(r.json(), schema)
    down = client.post("/v1/classify", json=PORTAL_DOWN).json()
    assert (down["id"], down["severity"], down["response_time_hours"]) == ("T-501", "critical", 1)
    assert client.post("/v1/classify", json=OPEN_CHANNELS).json()["id"] is None  # no id given, none invented


@pytest.mark.parametrize("method, path", [("POST", "/v1/classify"), ("POST", "/v1/classify/batch"),
                                          ("POST", "/v1/tickets"), ("GET", "/v1/tickets/T-501"), ("GET", "/v1/schema")])
def test_calls_without_a_known_api_key_get_a_401_and_healthz_stays_open(server: str, method: str, path: str) -> None:
    body = {"requests": [PORTAL_DOWN]} if path.endswith("batch") else PORTAL_DOWN
    for headers in ({}, {"authorization": "Bearer not-the-key"}, {"authorization": API_KEY},
                    {"authorization": f"Basic {API_KEY}"}):
        r = httpx.request(method, server + path, json=body if method == "POST" else None, headers=headers, timeout=30)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["code"] == "E077" and r.headers["www-authenticate"] == 'Bearer realm="intake"'
    assert httpx.get(server + "/healthz", timeout=30).status_code == 200
    desk = httpx.get(server + "/desk", timeout=30, follow_redirects=False)
    assert desk.status_code == 303 and desk.headers["location"] == "/desk/login?next=%2Fdesk"


def test_a_ticket_is_stored_classified_and_read_back_and_its_id_makes_it_idempotent(
        client: httpx.Client, local: Classifier) -> None:
    body = {**WITH_PASSWORD, "id": "TK-777", "subject": f"slow deals, pw {PASSWORD}",
            "received_at": "2026-01-05T08:00:00+01:00"}
    r = client.post("/v1/tickets", json=body)
    assert r.status_code == 201, r.text
    ticket = r.json()
    assert ticket["result"] == local.classify(body).to_dict()
    assert PASSWORD not in r.text and "[MASKED]" in ticket["text"] and ticket["subject"] == "slow deals, pw [MASKED]"
    assert ticket["received_at"] == "2026-01-05T07:00:00+00:00" and ticket["status"] == "open"
    due = datetime.fromisoformat(ticket["due_at"]) - datetime.fromisoformat(ticket["received_at"])
    assert due == timedelta(hours=ticket["result"]["response_time_hours"])
    assert ticket["labels"]["category"] == ticket["result"]["category"] and ticket["corrections"] == []
    assert ticket["reply"] == ticket["result"]["suggested_reply"]
    again = client.post("/v1/tickets", json=body)
    assert again.status_code == 200 and again.json() == ticket  # stored once, not classified again
    assert client.get("/v1/tickets/TK-777").json() == ticket
    clash = client.post("/v1/tickets", json={**body, "text": "Another request under the same ticket number"})
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "E073"
    nameless = client.post("/v1/tickets", json=OPEN_CHANNELS)
    assert nameless.status_code == 422 and nameless.json()["error"]["field"] == "id"
    missing = client.get("/v1/tickets/no-such-ticket")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "[E074] No ticket no-such-ticket."


def test_unknown_fields_are_ignored(client: httpx.Client) -> None:
    plain = client.post("/v1/classify", json=UPDATE_STUCK).json()
    extra = client.post("/v1/classify", json={**UPDATE_STUCK, "ticket_no": 88121, "customer": {"tier": "gold"}})
    assert extra.status_code == 200
    assert extra.json() == plain


def test_request_id_is_generated_or_taken_from_the_client(client: httpx.Client, dirs: SimpleNamespace) -> None:
    mine = client.post("/v1/classify", json=OPEN_CHANNELS, headers={"X-Request-ID": "crm-4711.a"})
    assert mine.headers["x-request-id"] == "crm-4711.a"
    forged = client.get("/healthz", headers={"X-Request-ID": "abc status=200"})
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["x-request-id"])
    assert "status=200 " in access_line(dirs, "crm-4711.a")


def test_batch_classifies_every_good_item_and_reports_bad_ones_as_error_rows(
        client: httpx.Client, local: Classifier) -> None:
    items = [PORTAL_DOWN, {"text": "   ", "id": "blank"}, OPEN_CHANNELS,
             {"text": "printer on fire", "channel": "fax"}, "just a string", UPDATE_STUCK]
    r = client.post("/v1/classify/batch", json={"requests": items})
    assert r.status_code == 200
    body = r.json()
    assert (body["count"], body["failed"]) == (6, 3)
    rows = body["results"]
    assert rows[0] == local.classify(PORTAL_DOWN).to_dict()
    assert rows[2] == local.classify({**OPEN_CHANNELS, "id": "3"}).to_dict()  # id-less items get their row number
    assert rows[5] == local.classify(UPDATE_STUCK).to_dict()
    assert rows[1] == {"id": "blank", "error": {
        "row": 2, "field": "text", "message": "[E053] row 2: field 'text': must not be empty or only white space."}}
    assert rows[3] == {"id": "4", "error": {
        "row": 4, "field": "channel",
        "message": "[E053] row 4: field 'channel': Input should be 'webform', 'live_chat', 'email' or 'other'."}}
    assert rows[4] == {"id": "5", "error": {"row": 5, "field": None, "message": "[E036] row 5: not a JSON object."}}
    schema = result_schema()
    for row in rows:
        jsonschema.validate(row, schema)


def test_a_lone_surrogate_is_refused_in_its_field_and_spoils_only_its_item(
        client: httpx.Client, local: Classifier) -> None:
    """``json.loads`` reads ``"\\ud800"`` as a lone surrogate, which no UTF-8 encoder takes:
    the field is refused (E053); in a batch, as that item's error row, with the row number
    for an id that cannot be echoed; the other items are classified."""
    items = [{"id": f"s{i}", "text": f"Calendar sync with Google stopped after update {i}"} for i in range(1, 101)]
    items[4]["id"] = "\ud800x"
    items[8]["attachments"] = ["log.txt", "\ud800.bmp"]
    items[11]["text"] = "portal down \udfff since 8:00"
    r = client.post("/v1/classify/batch", content=json.dumps({"requests": items}).encode(), headers=JSON)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["count"], body["failed"]) == (100, 3)
    rows = body["results"]
    problem = "has a lone surrogate (U+{code}) at character {at}, which is not valid Unicode."
    assert rows[4] == {"id": "5", "error": {"row": 5, "field": "id", "message":
                                            "[E053] row 5: field 'id': " + problem.format(code="D800", at=0)}}
    assert rows[8] == {"id": "s9", "error": {"row": 9, "field": "attachments", "message": "[E053] row 9: field "
                                             "'attachments': name 2 " + problem.format(code="D800", at=0)}}
    assert rows[11] == {"id": "s12", "error": {"row": 12, "field": "text", "message":
                                               "[E053] row 12: field 'text': " + problem.format(code="DFFF", at=12)}}
    assert rows[0] == local.classify(items[0]).to_dict() and rows[99] == local.classify(items[99]).to_dict()
    one = client.post("/v1/classify", content=json.dumps({"text": "printer broken", "attachments": ["\ud800.bmp"]})
                      .encode(), headers=JSON)
    assert one.status_code == 422
    assert one.json() == {"error": {"code": "E053", "field": "attachments", "message":
                                    "[E053] field 'attachments': name 1 " + problem.format(code="D800", at=0)}}
    assert client.post("/v1/classify", content=json.dumps({"text": "x", "id": "a\udc00"}).encode(),
                       headers=JSON).json()["error"]["field"] == "id"


def test_openapi_documents_the_request_models_and_their_limits(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/classify", "/v1/classify/batch", "/v1/schema", "/healthz"} <= set(spec["paths"])
    req = spec["components"]["schemas"]["ClassifyRequest"]
    assert req["required"] == ["text"]
    assert req["properties"]["text"]["maxLength"] == MAX_TEXT_CHARS
    assert spec["components"]["schemas"]["BatchRequest"]["properties"]["requests"]["maxItems"] == MAX_BATCH
    assert "415" in spec["paths"]["/v1/classify"]["post"]["responses"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_unknown_path_and_wrong_method_get_json_errors(client: httpx.Client) -> None:
    r = client.get("/v1/classfy")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "E056"
    assert r.json()["error"]["message"].startswith("[E056] No endpoint GET /v1/classfy. Endpoints: POST /v1/classify")
    assert client.get("/v1/classify").status_code == 405


# -- limits ----------------------------------------------------------------------------------
def test_oversized_body_is_refused_from_content_length_before_reading(
        client: httpx.Client, dirs: SimpleNamespace) -> None:
    body = json.dumps({"text": "a" * MAX_BODY_BYTES}).encode()
    r = client.post("/v1/classify", content=body, headers=JSON)
    assert r.status_code == 413
    assert r.json() == {"error": {"code": "E050", "message": f"[E050] Request body is {len(body)} bytes, over the "
                                                             f"limit of {MAX_BODY_BYTES} bytes for /v1/classify."}}
    assert "bytes_in=0" in access_line(dirs, r.headers["x-request-id"])


def test_oversized_body_without_content_length_is_refused_while_reading(
        client: httpx.Client, dirs: SimpleNamespace) -> None:
    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to check
        yield b'{"text": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"a" * 65536
        yield b'"}'

    r = client.post("/v1/classify", content=chunks(), headers=JSON)
    assert r.status_code == 413
    message = r.json()["error"]["message"]
    assert re.fullmatch(rf"\[E050\] Request body is at least \d+ bytes, over the limit of {MAX_BODY_BYTES} bytes "
                        r"for /v1/classify\.", message)
    read = int(re.search(r"bytes_in=(\d+)", access_line(dirs, r.headers["x-request-id"])).group(1))
    assert MAX_BODY_BYTES < read < 2 * MAX_BODY_BYTES


def test_batch_body_limit_is_its_own(client: httpx.Client) -> None:
    items = [{"text": "Our portal https://intranet.example.de is down since the update. " + "x" * 5000}] * 500
    body = json.dumps({"requests": items}).encode()
    assert MAX_BODY_BYTES < len(body) < MAX_BATCH_BODY_BYTES
    big = b'{"requests": [' + b",".join([b'{"text": "' + b"y" * 1_000_000 + b'"}'] * 22) + b"]}"
    assert client.post("/v1/classify/batch", content=big, headers=JSON).status_code == 413
    assert client.post("/v1/classify/batch", content=body[:-2] + b"x", headers=JSON).status_code == 400  # read, parsed


def test_too_many_batch_items_names_the_field_and_the_limit(client: httpx.Client) -> None:
    r = client.post("/v1/classify/batch", json={"requests": [{"text": "hello"}] * (MAX_BATCH + 1)})
    assert r.status_code == 422
    assert r.json() == {"error": {"code": "E054", "field": "requests", "message":
                                  f"[E054] field 'requests' has {MAX_BATCH + 1} items, over the limit of {MAX_BATCH} items."}}


def test_too_long_text_names_the_field_and_the_limit(client: httpx.Client) -> None:
    r = client.post("/v1/classify", json={"text": "x" * (MAX_TEXT_CHARS + 1)})
    assert r.status_code == 422
    assert r.json() == {"error": {"code": "E054", "field": "text", "message":
                                  f"[E054] field 'text' has {MAX_TEXT_CHARS + 1} characters, over the limit of "
                                  f"{MAX_TEXT_CHARS} characters."}}
    row = client.post("/v1/classify/batch", json={"requests": [{"text": "y" * (MAX_TEXT_CHARS + 5)}]}).json()
    assert row["results"][0]["error"]["message"] == (f"[E054] row 1: field 'text' has {MAX_TEXT_CHARS + 5} "
                                                     f"characters, over the limit of {MAX_TEXT_CHARS} characters.")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_body_that_is_not_json_content_is_refused(client: httpx.Client, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/v1/classify", content=json.dumps(OPEN_CHANNELS).encode(), headers=headers)
    assert r.status_code == 415
    assert r.json() == {"error": {"code": "E051", "message": f"[E051] Content type '{content_type or '(none)'}' "
                                                             "is not supported: send the body as application/json."}}
    ok = client.post("/v1/classify", content=json.dumps(OPEN_CHANNELS).encode(),
                     headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


@pytest.mark.parametrize("body, detail", [
    (b'{"text": "portal down since 8:00",}', "Expecting property name enclosed in double quotes at position 34"),
    (b"", "the body is empty; send a JSON object."),
    (b'{"text": "Gr\xfc\xdfe"}', "the body is not UTF-8 (byte 12)."),
])
def test_malformed_json_is_a_400(client: httpx.Client, body: bytes, detail: str) -> None:
    r = client.post("/v1/classify", content=body, headers=JSON)
    assert r.status_code == 400
    assert r.json() == {"error": {"code": "E052", "message": f"[E052] Request body is not valid JSON: {detail}"}}


@pytest.mark.parametrize("body, field, message", [
    ({"subject": "no text"}, "text", "[E053] field 'text': Field required."),
    ({"text": 42}, "text", "[E053] field 'text': Input should be a valid string."),
    ({"text": "hi", "product": "on_premise"}, "product", "[E053] field 'product': Input should be 'cloud' or 'self_hosted'."),
    ({"text": "hi", "id": True}, "id", "[E053] field 'id': must be a string or a whole number."),
])
def test_invalid_fields_are_a_422_naming_the_field(client: httpx.Client, body: dict, field: str, message: str) -> None:
    r = client.post("/v1/classify", json=body)
    assert r.status_code == 422
    assert r.json() == {"error": {"code": "E053", "field": field, "message": message}}


# -- load, logs, responsiveness ----------------------------------------------------------------
def test_concurrent_clients_get_their_own_results_while_malformed_requests_get_4xx(
        server: str, local: Classifier, dirs: SimpleNamespace) -> None:
    good = [PORTAL_DOWN, UPDATE_STUCK, OPEN_CHANNELS, WITH_PASSWORD]
    expected = {}
    bad = [(b'{"text": ', JSON, 400), (b"text=hello", {"content-type": "text/plain"}, 415),
           (b'{"subject": "only a subject"}', JSON, 422), (b"x" * (MAX_BODY_BYTES + 1), JSON, 413)]

    def client_run(t: int) -> list[tuple[int, int, str, dict]]:
        out = []
        with httpx.Client(base_url=server, headers=AUTH, timeout=120) as c:
            for i in range(10):
                if i % 5 == 4:
                    body, headers, want = bad[(t + i) % len(bad)]
                    r = c.post("/v1/classify", content=body, headers=headers)
                    out.append((want, r.status_code, r.headers["x-request-id"], r.json()))
                else:
                    req = {**good[(t + i) % len(good)], "id": f"c{t}-{i}"}
                    r = c.post("/v1/classify", json=req)
                    out.append((200, r.status_code, r.headers["x-request-id"], r.json()))
        return out

    with ThreadPoolExecutor(16) as pool:
        runs = [row for rows in pool.map(client_run, range(16)) for row in rows]
    assert len(runs) == 160
    for want, status, _, body in runs:
        assert status == want, body
        if status == 200:
            if body["id"] not in expected:
                t, i = (int(x) for x in body["id"][1:].split("-"))
                expected[body["id"]] = local.classify({**good[(t + i) % len(good)], "id": body["id"]}).to_dict()
            assert body == expected[body["id"]]
        else:
            assert set(body) == {"error"} and body["error"]["code"].startswith("E05")
    assert len(expected) == 16 * 8
    ids = {rid for _, _, rid, _ in runs}
    assert len(ids) == 160
    for _, status, rid, _ in runs[::7]:
        assert re.search(rf"request_id={rid} method=POST path=/v1/classify status={status} duration_ms=\d+\.\d ",
                         access_line(dirs, rid))


def test_logs_never_contain_request_text_or_secrets(client: httpx.Client, dirs: SimpleNamespace) -> None:
    r = client.post("/v1/classify", json=WITH_PASSWORD)
    assert r.status_code == 200
    result = r.json()
    assert "credentials_present" in result["flags"]
    assert PASSWORD not in r.text
    bad = client.post("/v1/classify", json={**WITH_PASSWORD, "channel": "carrier pigeon"})
    assert bad.status_code == 422 and PASSWORD not in bad.text
    line = access_line(dirs, r.headers["x-request-id"])
    assert "method=POST path=/v1/classify status=200 duration_ms=" in line
    log = dirs.log.read_text(encoding="utf-8")
    for secret in (PASSWORD, "nordwind-bau", "half a minute", "carrier pigeon"):
        assert secret not in log
    assert '"POST /v1/classify HTTP/1.1"' not in log  # uvicorn's own access log is off


def test_healthz_answers_while_a_large_batch_is_being_classified(client: httpx.Client, server: str) -> None:
    n = 300
    items = [{**(PORTAL_DOWN, UPDATE_STUCK, OPEN_CHANNELS)[i % 3], "id": f"b{i}"} for i in range(n)]
    done: dict[str, httpx.Response] = {}

    def send() -> None:
        with httpx.Client(base_url=server, headers=AUTH, timeout=300) as c:
            done["r"] = c.post("/v1/classify/batch", json={"requests": items})

    sender = threading.Thread(target=send)
    sender.start()
    seen_busy = False
    for _ in range(20_000):
        if not sender.is_alive():
            break
        h = client.get("/healthz")
        assert h.status_code == 200
        if h.json()["pending"] > 0 and sender.is_alive():
            seen_busy = True
            break
    sender.join(300)
    assert seen_busy, "/healthz never answered while the batch was being classified"
    body = done["r"].json()
    assert (body["count"], body["failed"]) == (n, 0)
    assert [r["id"] for r in body["results"]] == [f"b{i}" for i in range(n)]


def long_texts(n: int, chars: int = 7_500) -> list[str]:
    """``n`` texts of about ``chars`` characters each, made of tickets from the corpus."""
    lines = (PROJECT / "data" / "tickets.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    out, k = [], 0
    for _ in range(n):
        parts: list[str] = []
        while sum(map(len, parts)) < chars:
            parts.append(texts[k % len(texts)])
            k += 1
        out.append("\n\n".join(parts))
    return out


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_single_request_is_answered_promptly_while_a_large_batch_is_classified(
        client: httpx.Client, server: str) -> None:
    """A batch is classified a chunk at a time, taking turns with single requests; its
    memory is handed back afterwards."""
    pid = PROCESSES[server].pid
    items = [{"id": f"L{i}", "text": text} for i, text in enumerate(long_texts(80))]
    before = resident_mb(pid)
    done: dict[str, httpx.Response] = {}

    def send() -> None:
        with httpx.Client(base_url=server, headers=AUTH, timeout=300) as c:
            done["r"] = c.post("/v1/classify/batch", json={"requests": items})

    sender = threading.Thread(target=send)
    sender.start()
    for _ in range(3000):
        if client.get("/healthz").json()["pending"] > 0:
            break
        time.sleep(0.01)
    waits = []
    for _ in range(3):
        start = time.monotonic()
        assert client.post("/v1/classify", json=UPDATE_STUCK).status_code == 200
        waits.append(time.monotonic() - start)
    batch_running = sender.is_alive()
    sender.join(300)
    assert max(waits) < 1.5, waits
    assert batch_running, "the batch was done before the single requests were timed"
    body = done["r"].json()
    assert (body["count"], body["failed"]) == (80, 0)
    time.sleep(0.5)
    grown = resident_mb(pid) - before
    assert grown < 15, f"resident memory grew {grown:.0f} MB"


# -- hostile clients: stalled connections, deadlines, shutdown -----------------------------------
#: Short deadlines, so the tests need not wait long; 256 open files, as the probe had.
GUARDED = {"header_timeout_s": 3, "body_timeout_s": 4}
PARTIAL_HEADERS = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
PARTIAL_BODY = (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
                b"Authorization: Bearer " + API_KEY.encode() + b"\r\n\r\n{\"text\": ")


@pytest.fixture(scope="module")
def guarded(dirs: SimpleNamespace) -> Iterator[str]:
    with serving([str(dirs.model), str(dirs.rules)], dirs.root / "guarded.log", limits=GUARDED,
                 open_files=256) as url:
        yield url


def connect(url: str, data: bytes = b"") -> socket.socket:
    """A connection to ``url`` that sends ``data`` and then nothing."""
    s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=15)
    s.sendall(data)
    return s


def answer(s: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """(status line, headers, body) of what the server sends until it closes."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n") if head else ("", )
    return status, dict(line.lower().split(": ", 1) for line in lines), body


def test_stalled_clients_cannot_lock_out_new_ones(guarded: str) -> None:
    """300 connections that stop halfway, on a server with 256 open files: a new
    connection displaces the one that has waited longest, and is served."""
    stalled = [connect(guarded, PARTIAL_HEADERS if i % 2 else PARTIAL_BODY) for i in range(300)]
    try:
        for _ in range(5):
            start = time.monotonic()
            r = httpx.post(guarded + "/v1/classify", json=OPEN_CHANNELS, headers=AUTH, timeout=10)  # a new connection each
            assert r.status_code == 200
            assert time.monotonic() - start < 2
        assert httpx.get(guarded + "/healthz", timeout=10).json()["limits"]["max_connections"] == 1000
    finally:
        for s in stalled:
            s.close()


def test_a_client_that_stops_sending_gets_a_408_and_is_dropped(guarded: str) -> None:
    start = time.monotonic()
    silent, headers, body = connect(guarded), connect(guarded, PARTIAL_HEADERS), connect(guarded, PARTIAL_BODY)
    assert answer(silent) == ("", {}, b"")  # nothing came: the connection is just closed
    status, head, payload = answer(headers)
    assert status == "HTTP/1.1 408 Request Timeout" and head["connection"] == "close"
    assert json.loads(payload) == {"error": {"code": "E058", "message": "[E058] The request headers did not arrive "
                                             "within 3 s; the connection is closed. Send the whole request without "
                                             "pausing."}}
    status, head, payload = answer(body)
    assert status == "HTTP/1.1 408 Request Timeout" and head["connection"] == "close" and "x-request-id" in head
    assert json.loads(payload)["error"]["message"].startswith("[E058] The request body did not arrive within 4 s")
    assert 3.5 < time.monotonic() - start < 9


def test_a_full_server_answers_503_and_stops_within_its_shutdown_timeout(dirs: SimpleNamespace) -> None:
    """Every connection busy: a new one gets 503 E070 at once. At SIGTERM the requests
    under way get shutdown_timeout_s, then the server exits."""
    body = json.dumps({"requests": [{"text": t} for t in long_texts(150)]}).encode()
    request = (b"POST /v1/classify/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n" % (API_KEY.encode(), len(body))) + body
    limits = {"max_connections": 2, "shutdown_timeout_s": 2}
    with serving([str(dirs.model), str(dirs.rules)], dirs.root / "full.log", limits=limits) as url:
        busy = [connect(url, request) for _ in range(2)]  # some seconds of work each
        time.sleep(1)
        r = httpx.get(url + "/healthz", timeout=10)
        assert r.status_code == 503
        assert r.json() == {"error": {"code": "E070", "message": "[E070] Too many open connections (limit 2); "
                                                                 "retry shortly."}}
        proc = PROCESSES[url]
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        assert time.monotonic() - start < 2 + 4
        for s in busy:
            s.close()


def test_sigterm_drops_clients_still_sending_at_once(guarded: str) -> None:
    """(Last of the tests on ``guarded``: it stops that server.)"""
    stalled = [connect(guarded, PARTIAL_BODY), connect(guarded, PARTIAL_HEADERS)]
    time.sleep(0.3)
    proc = PROCESSES[guarded]
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert time.monotonic() - start < 2
    assert [answer(s)[0] for s in stalled] == ["", ""]  # closed, no answer


# -- start-up ----------------------------------------------------------------------------------
def test_run_with_workers_hands_each_worker_the_dirs_and_limits(dirs: SimpleNamespace, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(service.uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    for name in (service.ENV_MODEL_DIR, service.ENV_RULES_DIR, service.ENV_LIMITS):
        monkeypatch.setenv(name, "")  # restored (to unset) after the test
    service.run(port=8123, workers=2, model_dir=dirs.model, rules_dir=dirs.rules, limits=ServiceLimits(max_batch=5))
    (app, kw), = calls
    assert app == "classifier.service:app_from_env"
    assert (kw["factory"], kw["workers"], kw["port"], kw["access_log"]) == (True, 2, 8123, False)
    assert service.os.environ[service.ENV_MODEL_DIR] == str(dirs.model.resolve())
    assert service.os.environ[service.ENV_RULES_DIR] == str(dirs.rules.resolve())
    assert json.loads(service.os.environ[service.ENV_LIMITS])["max_batch"] == 5


def test_app_from_env_loads_the_model_and_rules_named_there(dirs: SimpleNamespace, local: Classifier,
                                                            monkeypatch) -> None:
    monkeypatch.setenv(service.ENV_MODEL_DIR, str(dirs.model))
    monkeypatch.setenv(service.ENV_RULES_DIR, str(dirs.rules))
    monkeypatch.setenv(service.ENV_LIMITS, json.dumps({"max_batch": 2}))
    with TestClient(service.app_from_env(), headers=AUTH) as c:
        health = c.get("/healthz").json()
        assert c.post("/v1/classify", json=UPDATE_STUCK).json() == local.classify(UPDATE_STUCK).to_dict()
        too_many = c.post("/v1/classify/batch", json={"requests": [OPEN_CHANNELS] * 3})
    assert health["rules"]["digest"] == local.rules_digest
    assert health["model"]["sha256"] == local.manifest["model_sha256"]
    assert too_many.status_code == 422 and "over the limit of 2 items" in too_many.json()["error"]["message"]


@pytest.mark.parametrize("workers", [1, 3])
def test_a_missing_model_stops_run_before_it_listens(tmp_path: Path, monkeypatch, workers: int) -> None:
    monkeypatch.setattr(service.uvicorn, "run", lambda *a, **kw: pytest.fail("uvicorn started"))
    missing = tmp_path / "no-model"
    with pytest.raises(ModelError) as exc:
        service.run(model_dir=missing, workers=workers)
    assert str(exc.value) == f"[E020] No model at {missing / 'model.skops'}. Train one with: intake train --out {missing}"
    with pytest.raises(IntakeError, match=re.escape("[E028] Parameter workers=0 is not allowed. Possible values: 1 or more")):
        service.run(workers=0)


def test_serve_without_the_serve_extra_says_how_to_install_it() -> None:
    code = "import sys; sys.modules['fastapi'] = None; from classifier.cli import main; main(['serve'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ('Error: the HTTP service needs the serve extra (fastapi is missing): '
                                   'pip install "intake-classifier[serve]" (in a checkout: pip install -e ".[serve]")')


# -- in process: paths a healthy server does not take ---------------------------------------------
class FakeClassifier:
    """Just enough of Classifier for the service; classify_many is scripted."""

    def __init__(self, classify_many) -> None:
        self.classify_many = classify_many
        self.manifest: dict = {}
        self.sources: dict = {}
        self.model = None
        self.rules_digest = "0" * 64
        self.analyser = SimpleNamespace(ruleset=SimpleNamespace(rules=[]), warm_up=lambda: None)


def unwrap(records) -> list[Request]:
    """The requests a classify_many was given (the worker hands them over with their row)."""
    return [r.record if isinstance(r, NumberedRecord) else r for r in records]


def echo(records):
    return [Result(id=r.id, category="general", suggested_reply=r.text) for r in unwrap(records)]


def picky(records):
    """echo, but any call with a request whose text is "poison" fails."""
    if any(r.text == "poison" for r in unwrap(records)):
        raise ValueError(f"cannot handle {records}")
    return echo(records)


def decoded(rows: list[Row]) -> list[dict]:
    return [json.loads(row.json) for row in rows]


def test_an_unexpected_error_is_a_500_with_the_request_id_and_is_logged_without_the_text(
        caplog: pytest.LogCaptureFixture) -> None:
    def explode(requests):
        raise RuntimeError(f"cannot handle {requests}")

    app = create_app(FakeClassifier(echo))
    with TestClient(app, headers=AUTH) as c, caplog.at_level("INFO", logger="intake"):
        app.state.worker.submit = explode
        r = c.post("/v1/classify", json=WITH_PASSWORD)
    rid = r.headers["x-request-id"]
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "E055", "message": f"[E055] Internal error while handling request {rid}; "
                                                             "it has been logged under that id."}}
    errors = [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith(f"request_id={rid} unhandled RuntimeError")
    assert any(f"request_id={rid} method=POST path=/v1/classify status=500" in rec.getMessage()
               for rec in caplog.records)
    assert not any(PASSWORD in rec.getMessage() or "nordwind" in rec.getMessage() for rec in caplog.records)


def test_work_beyond_max_pending_gets_a_503() -> None:
    release = threading.Event()

    def slow(requests):
        release.wait(30)
        return echo(requests)

    app = create_app(FakeClassifier(slow), limits=ServiceLimits(max_pending=1))
    with TestClient(app, headers=AUTH) as c, ThreadPoolExecutor(1) as pool:
        first = pool.submit(c.post, "/v1/classify", json={"text": "first"})
        for _ in range(3000):
            if app.state.worker.pending == 1:
                break
            time.sleep(0.01)
        r = c.post("/v1/classify", json={"text": "second"})
        release.set()
        assert first.result(30).status_code == 200
    assert r.status_code == 503
    assert r.json()["error"] == {"code": "E057", "message": "[E057] The service is busy (1 requests queued, limit 1); "
                                                            "retry shortly."}


def test_waiting_requests_are_classified_together_and_each_gets_its_own_results() -> None:
    calls: list[list[str | None]] = []

    def record(requests):
        calls.append([r.id for r in unwrap(requests)])
        return echo(requests)

    worker = ClassifyWorker(FakeClassifier(record), coalesce_items=4)
    jobs = [[Request(text="a", id="1")], [Request(text="b")], [Request(text="c", id="x"), Request(text="d", id="y")],
            [Request(text="e", id="5")]]
    futures = [worker.submit(job) for job in jobs]  # queued before the thread starts
    worker.start()
    results = [[(r["id"], r["suggested_reply"]) for r in decoded(f.result(10))] for f in futures]
    worker.stop()
    assert calls == [["1", None, "x", "y"], ["5"]]
    assert results == [[("1", "a")], [(None, "b")], [("x", "c"), ("y", "d")], [("5", "e")]]
    assert worker.pending == 0


def test_a_large_batch_is_classified_in_chunks_that_take_turns_with_single_requests() -> None:
    calls: list[list[str | None]] = []
    late = []

    def record(requests):
        calls.append([r.id for r in unwrap(requests)])
        if calls[-1][0] == "b0":  # a single request comes in while the batch is being classified
            late.append(worker.submit([Request(text="single", id="s2")]))
        return echo(requests)

    worker = ClassifyWorker(FakeClassifier(record), coalesce_items=4, small_job_chars=50)
    first = worker.submit([Request(text="single", id="s1")])
    batch = worker.submit([Request(text=f"row {i}", id=f"b{i}") for i in range(10)], rows=list(range(1, 11)))
    long = worker.submit([Request(text="x" * 60, id="long")])  # a long single text takes turns too
    worker.start()
    assert [r["id"] for r in decoded(batch.result(10))] == [f"b{i}" for i in range(10)]
    assert (decoded(first.result(10))[0]["id"], decoded(late[0].result(10))[0]["id"]) == ("s1", "s2")
    assert decoded(long.result(10))[0]["id"] == "long"
    worker.stop()
    assert calls == [["s1"], ["b0", "b1", "b2", "b3"], ["s2"], ["long"], ["b4", "b5", "b6", "b7"], ["b8", "b9"]]
    assert worker.pending == 0

    calls.clear()  # a chunk holds at most chunk_chars characters (or one longer request)
    worker = ClassifyWorker(FakeClassifier(record), chunk_chars=100, small_job_chars=50)
    sizes = [40, 40, 40, 150, 10]
    batch = worker.submit([Request(text="y" * n, id=f"c{i}") for i, n in enumerate(sizes)], rows=[1, 2, 3, 4, 5])
    worker.start()
    assert len(batch.result(10)) == 5
    worker.stop()
    assert calls == [["c0", "c1"], ["c2"], ["c3"], ["c4"]]


def test_one_failing_request_does_not_fail_the_requests_classified_with_it(
        caplog: pytest.LogCaptureFixture) -> None:
    worker = ClassifyWorker(FakeClassifier(picky))
    futures = [worker.submit([Request(text=t)]) for t in ("fine", "poison", "also fine")]
    batch = worker.submit([Request(text=t, id=f"r{row}") for row, t in ((3, "ok"), (7, "poison"), (9, "ok"))],
                          rows=[3, 7, 9])
    with caplog.at_level("INFO", logger="intake"):
        worker.start()
        rows = [f.result(10)[0] for f in futures] + batch.result(10)
    worker.stop()
    message = "[E059] the request could not be classified: internal error, logged under request id -."
    assert rows[1] == Row(json.dumps({"id": None, "error": {"row": 1, "field": None, "message": message}},
                                     separators=(",", ":")).encode(), message)
    assert [r["suggested_reply"] for r in decoded([rows[0], rows[2], rows[3], rows[5]])] == [
        "fine", "also fine", "ok", "ok"]
    assert json.loads(rows[4].json) == {"id": "r7", "error": {"row": 7, "field": None, "message":
        "[E059] row 7: the request could not be classified: internal error, logged under request id -."}}
    assert worker.pending == 0
    errors = [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"]
    assert [e.split("\n")[0] for e in errors] == ["request_id=None row 1 not classified: ValueError",
                                                   "request_id=None row 7 not classified: ValueError"]
    assert not any("poison" in e for e in errors)  # the exception's message may quote the request
    busy = ClassifyWorker(FakeClassifier(echo), max_pending=2)
    busy.submit([Request(text="x"), Request(text="y")])
    with pytest.raises(ServiceBusy):
        busy.submit([Request(text="z")])


def test_a_fault_in_the_classification_thread_fails_only_the_work_at_hand() -> None:
    worker = ClassifyWorker(FakeClassifier(echo))
    classify = worker._classify
    calls = iter([RuntimeError("bug"), None])

    def faulty(items):
        exc = next(calls)
        if exc is not None:
            raise exc
        classify(items)

    worker._classify = faulty
    worker.start()
    first = worker.submit([Request(text="a"), Request(text="b")])
    assert isinstance(first.exception(10), RuntimeError)
    second = worker.submit([Request(text="c")])
    assert decoded(second.result(10))[0]["suggested_reply"] == "c"
    worker.stop()
    assert worker.pending == 0


def test_an_item_that_cannot_be_classified_is_its_own_error_row_not_the_batchs(
        caplog: pytest.LogCaptureFixture) -> None:
    items = [{"id": f"T-{i}", "text": f"request {i}"} for i in range(1, 101)]
    items[36] = {"id": "T-37", "text": "poison"}
    items[79] = {"text": "poison"}
    with TestClient(create_app(FakeClassifier(picky)), headers=AUTH) as c, caplog.at_level("INFO", logger="intake"):
        r = c.post("/v1/classify/batch", json={"requests": items}, headers={"x-request-id": "batch-1"})
        one = c.post("/v1/classify", json={"text": "poison"}, headers={"x-request-id": "single-1"})
    assert r.status_code == 200
    body = r.json()
    assert (body["count"], body["failed"]) == (100, 2)
    rows = body["results"]
    assert rows[36] == {"id": "T-37", "error": {"row": 37, "field": None, "message": "[E059] row 37: the request "
                        "could not be classified: internal error, logged under request id batch-1."}}
    assert rows[79] == {"id": "80", "error": {"row": 80, "field": None, "message": "[E059] row 80: the request "
                        "could not be classified: internal error, logged under request id batch-1."}}
    assert [row["suggested_reply"] for i, row in enumerate(rows) if i not in (36, 79)] == [
        item["text"] for i, item in enumerate(items) if i not in (36, 79)]
    assert one.status_code == 500
    assert one.json() == {"error": {"code": "E059", "message": "[E059] the request could not be classified: "
                                                               "internal error, logged under request id single-1."}}
    errors = [rec.getMessage().split("\n")[0] for rec in caplog.records if rec.levelname == "ERROR"]
    assert errors == ["request_id=batch-1 row 37 not classified: ValueError",
                      "request_id=batch-1 2 of 100 rows not classified or encoded",
                      "request_id=single-1 row 1 not classified: ValueError"]


def test_an_item_whose_result_cannot_be_encoded_is_its_own_error_row_not_the_batchs() -> None:
    def unencodable(records):  # a lone surrogate cannot be encoded as UTF-8 JSON
        return [Result(id=r.id, category="general", suggested_reply="\ud800" if r.text == "bad" else r.text)
                for r in unwrap(records)]

    items = [{"id": "a", "text": "fine"}, {"id": "b", "text": "bad"}, {"text": "also fine"}]
    with TestClient(create_app(FakeClassifier(unencodable)), headers=AUTH) as c:
        r = c.post("/v1/classify/batch", json={"requests": items}, headers={"x-request-id": "enc-1"})
        one = c.post("/v1/classify", json={"text": "bad"}, headers={"x-request-id": "enc-2"})
    assert r.status_code == 200
    assert r.json()["results"][1] == {"id": "b", "error": {"row": 2, "field": None, "message": "[E059] row 2: the "
                                      "request could not be encoded as JSON: internal error, logged under request id "
                                      "enc-1."}}
    assert [row.get("suggested_reply") for row in r.json()["results"]] == ["fine", None, "also fine"]
    assert (one.status_code, one.json()["error"]["code"]) == (500, "E059")


def test_an_error_row_whose_id_cannot_be_encoded_carries_its_row_number() -> None:
    assert json.loads(service._error_row("\udc80x", 7, "id", "bad")) == {
        "id": "7", "error": {"row": 7, "field": "id", "message": "bad"}}
    assert json.loads(service._error_row("T-1", 7, None, "bad"))["id"] == "T-1"
    assert json.loads(service._error_row(None, 7, "a\ud800", "bad \udfff"))["error"] == {
        "row": 7, "field": "a\\ud800", "message": "bad \\udfff"}


def test_limits_must_be_positive() -> None:
    with pytest.raises(IntakeError, match=re.escape("[E028] Parameter max_batch=0 is not allowed. "
                                                    "Possible values: a whole number >= 1")):
        ServiceLimits(max_batch=0)


def test_valid_single_requests_are_answered_directly_exactly_as_the_route_answers(local: Classifier) -> None:
    """POST /v1/classify answers a valid body in the request gate, without FastAPI's
    routing; every other body goes on to the route. Both ways must give the very same
    bytes, status and content type, and the direct way must really be taken."""
    direct_app, route_app = create_app(local), create_app(local)
    (gate,) = [m for m in direct_app.user_middleware if m.cls is service.RequestGate]
    answered = []
    direct = gate.kwargs["direct"]["/v1/classify"]

    async def counting(body: bytes):
        answer = await direct(body)
        answered.append(answer is not None)
        return answer

    gate.kwargs["direct"] = {"/v1/classify": counting}
    (route_gate,) = [m for m in route_app.user_middleware if m.cls is service.RequestGate]
    route_gate.kwargs["direct"] = {}  # everything through FastAPI's route
    valid = [PORTAL_DOWN, UPDATE_STUCK, OPEN_CHANNELS, WITH_PASSWORD,
             {"id": 4711, "text": "CRM export to Excel is empty since 24.300", "subject": "", "attachments": ["a.bmp"]},
             {"text": "Calendar sync with Google stopped", "product": "cloud", "unknown_field": 1}]
    invalid = [b"{not json", b"[1, 2]", b"null", b'{"text": ""}', b'{"text": 5}', b'{"subject": "no text"}',
               json.dumps({"text": "x", "attachments": "one.png"}).encode(), b'{"text": "ok", "channel": "fax"}']
    bodies = [json.dumps(b).encode() for b in valid] + invalid
    with TestClient(direct_app, headers=AUTH) as fast, TestClient(route_app, headers=AUTH) as routed:
        for body in bodies:
            a = fast.post("/v1/classify", content=body, headers={**JSON, "x-request-id": "same-id"})
            b = routed.post("/v1/classify", content=body, headers={**JSON, "x-request-id": "same-id"})
            assert (a.status_code, a.headers["content-type"], a.content) == (
                b.status_code, b.headers["content-type"], b.content), body[:60]
    assert answered == [True] * len(valid) + [False] * len(invalid)
