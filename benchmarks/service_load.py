"""Load test of the HTTP service against the library in the same run.

    python benchmarks/service_load.py [--duration 20] [--max-requests 20000] [--clients 16]
                                      [--bad-share 0.05] [--workers 1] [--batch-size 50]

Starts ``intake serve`` on a free loopback port, then:

1. in-process baseline: ``Classifier.classify_many`` over the request corpus (the
   test split of data/tickets.jsonl); its results are also the expected answers;
2. single requests: ``--clients`` threads POST /v1/classify until ``--duration``
   seconds or ``--max-requests`` requests; a ``--bad-share`` of them are malformed
   (bad JSON, wrong content type, missing text, oversized body) and must get their
   4xx, every well-formed one must get 200 and exactly the in-process result;
3. the batch endpoint: the same corpus in batches of ``--batch-size``;
4. the desk's intake: ``--clients`` threads POST /v1/tickets (store and classify, in
   the SQLite store, a new id each time) for ``--duration`` / 2 seconds, then
   /v1/classify again for as long, so both are measured alike in the same run.

The server's store is a SQLite file in a temporary folder; every call carries the
API key the server is started with. Prints figures and ends with
``service: X req/s, p50 A ms, p99 B ms, errors E; in-process: Y req/s; ratio R``
(ratio = service / in-process) and
``tickets: X req/s, p50 A ms, errors E; /v1/classify alike: Y req/s; ratio R``.
The load generator shares the machine with the server, so the ratios are floors;
they are reported, not asserted.
"""
from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import numpy as np

from classifier.classify import Classifier
from classifier.service import MAX_BODY_BYTES, _json_bytes

ROOT = Path(__file__).resolve().parent.parent
#: The key the benchmark's servers accept (INTAKE_API_KEYS) and every call sends.
API_KEY = "benchmark-key"
AUTH = {"authorization": f"Bearer {API_KEY}"}
JSON = {"content-type": "application/json", **AUTH}
#: Malformed requests and the status each must get.
BAD = [
    (b'{"text": "site down since the update", ', JSON, 400),
    (b"text=site+down", {"content-type": "application/x-www-form-urlencoded", **AUTH}, 415),
    (b'{"subject": "no text at all"}', JSON, 422),
    (b'{"text": "' + b"a" * (MAX_BODY_BYTES + 1) + b'"}', JSON, 413),
]


def corpus(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    test = [r for r in rows if r.get("split") == "test"] or rows
    return [{k: r[k] for k in ("text", "subject") if r.get(k)} for r in test]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, log_path: Path, preexec_fn=None) -> tuple[subprocess.Popen, str]:
    """``intake serve`` on a free loopback port (with ``args.workers``, ``args.model`` and
    ``args.rules`` where given), once it answers /healthz; ``preexec_fn`` runs in the child."""
    port = free_port()
    cmd = [sys.executable, "-m", "classifier.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if getattr(args, "workers", None):
        cmd += ["--workers", str(args.workers)]
    if getattr(args, "model", None):
        cmd += ["--model", args.model]
    if getattr(args, "rules", None):
        cmd += ["--rules", args.rules]
    env = {**os.environ, "INTAKE_API_KEYS": API_KEY,
           "INTAKE_DATABASE_URL": f"sqlite:///{log_path.parent / 'intake.db'}"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT, preexec_fn=preexec_fn, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit("server did not answer /healthz within 120 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of a process and its children, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids, total = [pid], 0.0
    try:
        for p in Path("/proc").iterdir():
            if p.name.isdigit() and int(p.name) != pid:
                stat = (p / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(p.name))
        for p in pids:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError, IndexError):
        return None
    return total


def in_process(clf: Classifier, reqs: list[dict], rounds: int = 3) -> tuple[float, list[dict]]:
    """Best of ``rounds`` passes of classify_many over the corpus (req/s), and the results."""
    list(clf.classify_many(reqs[:20]))  # warm up
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        expected = [r.to_dict() for r in clf.classify_many(reqs)]
        best = max(best, len(reqs) / (time.perf_counter() - start))
    return best, expected


def single_load(url: str, reqs: list[dict], expected: list[dict], args: argparse.Namespace) -> dict:
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    bad_ok = [0]
    every = max(1, round(1 / args.bad_share)) if args.bad_share > 0 else 0
    deadline = time.monotonic() + args.duration

    # bodies encoded once, and the standard library's HTTP client: the load generator
    # shares the two cores with the server, so its own cost per request must be small
    bodies = [json.dumps({**r, "id": str(i + 1)}).encode() for i, r in enumerate(reqs)]
    expected_bytes = [_json_bytes(e) for e in expected]
    host, port = url.split("//", 1)[1].rsplit(":", 1)

    def post(conn: http.client.HTTPConnection, body: bytes, headers: dict) -> tuple[int, bytes]:
        conn.request("POST", "/v1/classify", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def client() -> None:
        lat, errs, bad = [], [], 0
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while time.monotonic() < deadline:
            with lock:
                k = next(counter)
            if k >= args.max_requests:
                break
            try:
                if every and k % every == every - 1:
                    body, headers, want = BAD[(k // every) % len(BAD)]
                    status, data = post(conn, body, headers)
                    if status == want and json.loads(data)["error"]["code"].startswith("E05"):
                        bad += 1
                    else:
                        errs.append(f"malformed #{k}: wanted {want}, got {status}")
                    continue
                i = k % len(reqs)
                t0 = time.perf_counter()
                status, data = post(conn, bodies[i], JSON)
                lat.append(time.perf_counter() - t0)
                # the same bytes as the in-process result encoded alike, else the same JSON
                if status != 200 or (data != expected_bytes[i] and json.loads(data) != expected[i]):
                    errs.append(f"request #{k}: status {status}, result differs from in-process")
            except (OSError, http.client.HTTPException) as exc:
                errs.append(f"request #{k}: {type(exc).__name__}")
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.close()
        with lock:
            latencies.extend(lat)
            errors.extend(errs)
            bad_ok[0] += bad

    elapsed = run_clients(client, args.clients)
    return {"good": len(latencies), "bad_ok": bad_ok[0], "errors": errors, "elapsed": elapsed,
            "rps": len(latencies) / elapsed, "p50": percentile_ms(latencies, 50), "p99": percentile_ms(latencies, 99)}


def batch_load(url: str, reqs: list[dict], expected: list[dict], args: argparse.Namespace) -> dict:
    batches = [list(range(s, min(s + args.batch_size, len(reqs)))) for s in range(0, len(reqs), args.batch_size)]
    counter = itertools.count()
    lock = threading.Lock()
    done, errors, latencies = [0], [], []
    clients = max(1, min(args.clients, 4))
    deadline = time.monotonic() + args.duration / 2

    def client() -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=300) as c:
            while time.monotonic() < deadline:
                with lock:
                    k = next(counter)
                if k * args.batch_size >= args.max_requests:
                    break
                idx = batches[k % len(batches)]
                t0 = time.perf_counter()
                r = c.post("/v1/classify/batch", json={"requests": [{**reqs[i], "id": str(i + 1)} for i in idx]})
                dt = time.perf_counter() - t0
                ok = r.status_code == 200 and r.json()["results"] == [expected[i] for i in idx]
                with lock:
                    latencies.append(dt)
                    done[0] += len(idx)
                    if not ok:
                        errors.append(f"batch #{k}: status {r.status_code} or results differ")

    elapsed = run_clients(client, clients)
    return {"items": done[0], "rps": done[0] / elapsed, "errors": errors, "clients": clients,
            "p50": percentile_ms(latencies, 50)}


def posting_load(url: str, path: str, reqs: list[dict], seconds: float, clients: int, run: str) -> dict:
    """``clients`` threads POST the corpus to ``path`` for ``seconds``, each request with
    an id of its own (``run`` keeps the ids of two runs apart); 201/200 is a success."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    deadline = time.monotonic() + seconds

    def client() -> None:
        lat, errs = [], []
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while time.monotonic() < deadline:
            with lock:
                k = next(counter)
            body = json.dumps({**reqs[k % len(reqs)], "id": f"{run}-{k}"}).encode()
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=JSON)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errs.append(f"{path} #{k}: {type(exc).__name__}")
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                continue
            lat.append(time.perf_counter() - t0)
            if resp.status not in (200, 201):
                errs.append(f"{path} #{k}: status {resp.status}")
        conn.close()
        with lock:
            latencies.extend(lat)
            errors.extend(errs)

    elapsed = run_clients(client, clients)
    return {"done": len(latencies), "rps": len(latencies) / elapsed, "p50": percentile_ms(latencies, 50),
            "errors": errors}


def run_clients(client: Callable[[], None], n: int) -> float:
    """Run ``n`` threads of ``client`` to the end; seconds from first start to last end."""
    threads = [threading.Thread(target=client) for _ in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.array(seconds) * 1000, q)) if seconds else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of single-request load (batch: half)")
    ap.add_argument("--max-requests", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--bad-share", type=float, default=0.05, help="share of malformed/oversized requests")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "tickets.jsonl")
    ap.add_argument("--model", default=None)
    ap.add_argument("--rules", default=None)
    args = ap.parse_args()

    reqs = [{**r, "id": str(i + 1)} for i, r in enumerate(corpus(args.data))]
    clf = Classifier.load(args.model, rules_dir=args.rules)
    before, expected = in_process(clf, reqs)

    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        proc, url = start_server(args, log_path)
        try:
            cpu0 = cpu_seconds(proc.pid)
            s = single_load(url, reqs, expected, args)
            cpu1 = cpu_seconds(proc.pid)
            b = batch_load(url, reqs, expected, args)
            t = posting_load(url, "/v1/tickets", reqs, args.duration / 2, args.clients, "tickets")
            c = posting_load(url, "/v1/classify", reqs, args.duration / 2, args.clients, "classify")
        finally:
            stop(proc)
        log = log_path.read_text(encoding="utf-8", errors="replace")
    leaked = sum(1 for r in reqs[:50] if r["text"][:40] in log)
    after, _ = in_process(clf, reqs)
    base_rps = max(before, after)  # the machine is shared: the better pass is the fairer baseline
    print(f"in-process classify_many: {len(reqs)} requests, best of 3 passes before {before:.0f} req/s, "
          f"after {after:.0f} req/s")

    errors = s["errors"] + b["errors"]
    for line in errors[:10]:
        print("  error:", line)
    print(f"single: {s['good']} well-formed requests in {s['elapsed']:.1f} s from {args.clients} clients "
          f"({args.workers} worker(s)); {s['bad_ok']} malformed/oversized got their 4xx")
    print(f"batch of {args.batch_size}: {b['items']} requests, {b['rps']:.0f} req/s, "
          f"p50 {b['p50']:.0f} ms per batch ({b['clients']} clients), ratio {b['rps'] / base_rps:.2f}")
    print(f"request text in server log: {leaked} of 50 checked")
    if cpu0 is not None and cpu1 is not None and s["good"]:
        per = (cpu1 - cpu0) * 1000 / (s["good"] + s["bad_ok"])
        print(f"server CPU per single request: {per:.2f} ms (in-process: {1000 / base_rps:.2f} ms); "
              f"CPU ratio {1000 / base_rps / per:.2f} (what the ratio would be with a core of its own)")
    print(f"service: {s['rps']:.0f} req/s, p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms, errors {len(s['errors'])}; "
          f"in-process: {base_rps:.0f} req/s; ratio {s['rps'] / base_rps:.2f}")
    for line in (t["errors"] + c["errors"])[:10]:
        print("  error:", line)
    print(f"tickets: {t['rps']:.0f} req/s ({t['done']} stored), p50 {t['p50']:.1f} ms, errors {len(t['errors'])}; "
          f"/v1/classify alike: {c['rps']:.0f} req/s, p50 {c['p50']:.1f} ms; ratio {t['rps'] / c['rps']:.2f}")


if __name__ == "__main__":
    main()
