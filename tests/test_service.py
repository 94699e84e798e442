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
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
from classifier.request import Request
from classifier.result import Result, result_schema
from classifier.rules import DEFAULT_RULES_DIR
from classifier.service import (MAX_BATCH, MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES, MAX_TEXT_CHARS, ClassifyWorker,
                                ServiceBusy, ServiceLimits, create_app)

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
START_TIMEOUT_S = 90
PROJECT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(args: list[str], log_path: Path) -> Iterator[str]:
    """Run ``intake serve ARGS`` on a free loopback port until /healthz answers; yield its URL."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "classifier.cli", "serve", "--host", "127.0.0.1",
                                 "--port", str(port), *args], stdout=log, stderr=log, cwd=PROJECT)
    url = f"http://127.0.0.1:{port}"
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
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


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
    with httpx.Client(base_url=server, timeout=60) as c:
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
        with httpx.Client(base_url=server, timeout=120) as c:
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
        with httpx.Client(base_url=server, timeout=300) as c:
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
    with TestClient(service.app_from_env()) as c:
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
    assert str(exc.value) == f"[E020] No model at {missing / 'model.joblib'}. Train one with: intake train --out {missing}"
    with pytest.raises(IntakeError, match=re.escape("[E028] Parameter workers=0 is not allowed. Possible values: 1 or more")):
        service.run(workers=0)


def test_serve_without_the_serve_extra_says_how_to_install_it() -> None:
    code = "import sys; sys.modules['fastapi'] = None; from classifier.cli import main; main(['serve'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ('Error: the HTTP service needs the serve extra (fastapi is missing): '
                                   'pip install -e ".[serve]"')


# -- in process: paths a healthy server does not take ---------------------------------------------
class FakeClassifier:
    """Just enough of Classifier for the service; classify_many is scripted."""

    def __init__(self, classify_many) -> None:
        self.classify_many = classify_many
        self.manifest: dict = {}
        self.model = None
        self.rules_digest = "0" * 64
        self.analyser = SimpleNamespace(ruleset=SimpleNamespace(rules=[]))


def echo(requests):
    return [Result(id=r.id, category="general", suggested_reply=r.text) for r in requests]


def test_an_unexpected_error_is_a_500_with_the_request_id_and_is_logged_without_the_text(
        caplog: pytest.LogCaptureFixture) -> None:
    def explode(requests):
        raise RuntimeError(f"cannot handle {requests[0].text}")

    with TestClient(create_app(FakeClassifier(explode))) as c, caplog.at_level("INFO", logger="intake"):
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
    with TestClient(app) as c, ThreadPoolExecutor(1) as pool:
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
        calls.append([r.id for r in requests])
        return echo(requests)

    worker = ClassifyWorker(FakeClassifier(record), coalesce_items=4)
    jobs = [[Request(text="a", id="1")], [Request(text="b")], [Request(text="c", id="x"), Request(text="d", id="y")],
            [Request(text="e", id="5")]]
    futures = [worker.submit(job) for job in jobs]  # queued before the thread starts
    worker.start()
    results = [[(r.id, r.suggested_reply) for r in f.result(10)] for f in futures]
    worker.stop()
    assert calls == [["1", None, "x", "y"], ["5"]]
    assert results == [[("1", "a")], [(None, "b")], [("x", "c"), ("y", "d")], [("5", "e")]]
    assert worker.pending == 0


def test_a_batch_too_big_to_coalesce_is_classified_on_its_own_in_queue_order() -> None:
    calls: list[list[str | None]] = []

    def record(requests):
        calls.append([r.id for r in requests])
        return echo(requests)

    worker = ClassifyWorker(FakeClassifier(record), coalesce_items=4)
    futures = [worker.submit([Request(text="single", id="s1")]),
               worker.submit([Request(text=f"row {i}", id=f"b{i}") for i in range(5)]),
               worker.submit([Request(text="single", id="s2")])]
    worker.start()
    assert [len(f.result(10)) for f in futures] == [1, 5, 1]
    worker.stop()
    assert calls == [["s1"], ["b0", "b1", "b2", "b3", "b4"], ["s2"]]


def test_one_failing_request_does_not_fail_the_requests_classified_with_it() -> None:
    def picky(requests):
        if any(r.text == "poison" for r in requests):
            raise ValueError("no")
        return echo(requests)

    worker = ClassifyWorker(FakeClassifier(picky))
    futures = [worker.submit([Request(text=t)]) for t in ("fine", "poison", "also fine")]
    worker.start()
    assert futures[0].result(10)[0].suggested_reply == "fine"
    assert isinstance(futures[1].exception(10), ValueError)
    assert futures[2].result(10)[0].suggested_reply == "also fine"
    worker.stop()
    assert worker.pending == 0
    busy = ClassifyWorker(FakeClassifier(echo), max_pending=2)
    busy.submit([Request(text="x"), Request(text="y")])
    with pytest.raises(ServiceBusy):
        busy.submit([Request(text="z")])


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
    with TestClient(direct_app) as fast, TestClient(route_app) as routed:
        for body in bodies:
            a = fast.post("/v1/classify", content=body, headers={**JSON, "x-request-id": "same-id"})
            b = routed.post("/v1/classify", content=body, headers={**JSON, "x-request-id": "same-id"})
            assert (a.status_code, a.headers["content-type"], a.content) == (
                b.status_code, b.headers["content-type"], b.content), body[:60]
    assert answered == [True] * len(valid) + [False] * len(invalid)
