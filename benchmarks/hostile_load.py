"""Ordinary requests to the HTTP service while it is under hostile load.

    python benchmarks/hostile_load.py [--duration 25] [--clients 4] [--stalled 300] [--open-files 256]
                                      [--bombs 1] [--batch 1000] [--batch-chars 4000]

Starts ``intake serve`` on a free loopback port (with at most ``--open-files`` open
files, as a small container has), then for ``--duration`` seconds runs at once:

- stalled clients: ``--stalled`` connections that send nothing, part of a request's
  headers, or its headers and part of its body, and then nothing more; one that the
  server drops comes back a second later (at most 20 x ``--stalled`` connections in all);
- whitespace bombs: ``--bombs`` threads posting texts whose lines start with 20,000
  spaces;
- one large batch: ``--batch`` texts of about ``--batch-chars`` characters in one
  request (it may run past the window: it is then waited for, up to ``--batch-wait``);
- ordinary requests: ``--clients`` threads posting single requests from the corpus, a
  new connection each (as separate clients would), each answer checked against the
  in-process result.

Prints what each did and ends with one line
``hostile load: ordinary p99 X s, errors E (n=N)``; errors are ordinary requests that
failed or got another answer than in-process. The load generator shares the machine
with the server.
"""
from __future__ import annotations

import argparse
import http.client
import itertools
import json
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import httpx
import numpy as np

from classifier.classify import Classifier
from classifier.service import _json_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import AUTH, API_KEY, corpus, stop, start_server as start_service  # noqa: E402 - the sibling benchmark

ROOT = Path(__file__).resolve().parent.parent
JSON = {"content-type": "application/json", **AUTH}
#: What a stalled client sends before it stops: nothing, part of the headers, or the
#: headers and part of a body.
STALLS = [
    b"",
    b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n",
    b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Length: 5000\r\n\r\n{\"text\": \"the portal is",
]
#: A stalled client whose connection the server ends comes back this much later.
REOPEN_AFTER_S = 1.0
BOMB_LINE = " " * 20_000 + "the portal shows 502 since the update, line {}"


def start_server(args: argparse.Namespace, log_path: Path) -> tuple[subprocess.Popen, str]:
    """The server, with at most ``--open-files`` open files, as a small container has."""
    def limit_files() -> None:
        if args.open_files:
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.open_files, args.open_files))

    return start_service(args, log_path, preexec_fn=limit_files)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def long_texts(texts: list[str], n: int, chars: int) -> list[str]:
    out, k = [], 0
    for _ in range(n):
        parts: list[str] = []
        while sum(map(len, parts)) < chars:
            parts.append(texts[k % len(texts)])
            k += 1
        out.append("\n\n".join(parts))
    return out


def stalled_clients(port: int, n: int, stop_at: float, out: dict) -> None:
    """Keep ``n`` stalled connections open until ``stop_at``; count how the server ends them."""
    sel = selectors.DefaultSelector()
    opened = itertools.count()
    limit = 20 * n

    def open_one() -> None:
        k = next(opened)
        if k >= limit:
            return
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(STALLS[k % len(STALLS)])
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, time.monotonic())
        except OSError:
            out["connect_failed"] += 1

    reopen: deque[float] = deque()  # when to replace a connection the server ended
    for _ in range(n):
        open_one()
    while time.monotonic() < stop_at:
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            out["408" if data.startswith(b"HTTP/1.1 408") else "503" if data.startswith(b"HTTP/1.1 503")
                else "closed"] += 1
            out["held_s"].append(time.monotonic() - key.data)
            sel.unregister(s)
            s.close()
            reopen.append(time.monotonic() + REOPEN_AFTER_S)
        while reopen and reopen[0] <= time.monotonic():
            reopen.popleft()
            open_one()
    out["opened"] = min(next(opened), limit)
    for key in list(sel.get_map().values()):
        key.fileobj.close()


def post(host: str, port: int, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=JSON)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=25.0, help="seconds of hostile load")
    ap.add_argument("--clients", type=int, default=4, help="threads of ordinary single requests")
    ap.add_argument("--stalled", type=int, default=300, help="stalled connections held open")
    ap.add_argument("--open-files", type=int, default=256, help="the server's open-file limit (0: unchanged)")
    ap.add_argument("--bombs", type=int, default=1, help="threads posting whitespace bombs")
    ap.add_argument("--bomb-lines", type=int, default=4, help="lines of 20,000 leading spaces per bomb")
    ap.add_argument("--batch", type=int, default=1000, help="texts in the one large batch (0: none)")
    ap.add_argument("--batch-chars", type=int, default=4000, help="characters per batch text")
    ap.add_argument("--batch-wait", type=float, default=180.0, help="seconds to wait for the batch after the window")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "tickets.jsonl")
    args = ap.parse_args()

    reqs = [{**r, "id": str(i + 1)} for i, r in enumerate(corpus(args.data)[:300])]
    clf = Classifier.load()
    expected = [r.to_dict() for r in clf.classify_many(reqs)]
    bodies = [json.dumps(r).encode() for r in reqs]
    expected_bytes = [_json_bytes(e) for e in expected]
    batch_body = json.dumps({"requests": [{"id": f"B{i}", "text": t} for i, t in enumerate(
        long_texts([r["text"] for r in reqs], args.batch, args.batch_chars))]}).encode()
    bomb_body = json.dumps({"text": "\n".join(BOMB_LINE.format(j) for j in range(args.bomb_lines))}).encode()
    del clf

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(args, Path(tmp) / "server.log")
        host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
        rss_before = resident_mb(proc.pid)
        lock = threading.Lock()
        ordinary: list[float] = []
        slowest: list[tuple[float, float]] = []  # (latency, seconds into the window)
        errors: list[str] = []
        bombs: list[tuple[int, float]] = []
        batch: dict = {}
        stalls: dict = {"408": 0, "503": 0, "closed": 0, "connect_failed": 0, "held_s": []}
        start, start_perf = time.monotonic(), time.perf_counter()
        deadline = start + args.duration

        def ordinary_client(t: int) -> None:
            lat, errs, when = [], [], []
            for k in itertools.count(t, args.clients):
                if time.monotonic() >= deadline:
                    break
                i = k % len(reqs)
                t0 = time.perf_counter()
                try:
                    status, data = post(host, port, "/v1/classify", bodies[i], timeout=60)
                except (OSError, http.client.HTTPException) as exc:
                    lat.append(time.perf_counter() - t0)
                    when.append(t0 - start_perf)
                    errs.append(f"request {k}: {type(exc).__name__}")
                    continue
                lat.append(time.perf_counter() - t0)
                when.append(t0 - start_perf)
                if status != 200 or (data != expected_bytes[i] and json.loads(data) != expected[i]):
                    errs.append(f"request {k}: status {status}{'' if status != 200 else ', another result'}")
            with lock:
                ordinary.extend(lat)
                errors.extend(errs)
                slowest.extend(zip(lat, when))

        def bomber() -> None:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    status, _ = post(host, port, "/v1/classify", bomb_body, timeout=120)
                except (OSError, http.client.HTTPException):
                    status = -1
                with lock:
                    bombs.append((status, time.perf_counter() - t0))

        def big_batch() -> None:
            t0 = time.perf_counter()
            try:
                status, data = post(host, port, "/v1/classify/batch", batch_body,
                                    timeout=args.duration + args.batch_wait)
                body = json.loads(data) if status == 200 else {}
                batch.update(status=status, count=body.get("count"), failed=body.get("failed"))
            except (OSError, http.client.HTTPException) as exc:
                batch.update(status=type(exc).__name__)
            batch["seconds"] = time.perf_counter() - t0

        threads = [threading.Thread(target=stalled_clients, args=(port, args.stalled, deadline, stalls))]
        threads += [threading.Thread(target=bomber) for _ in range(args.bombs)]
        batch_thread = threading.Thread(target=big_batch)
        if args.batch:
            batch_thread.start()
        for t in threads:
            t.start()
        time.sleep(0.5)  # the stalled connections and the batch first
        clients = [threading.Thread(target=ordinary_client, args=(t,)) for t in range(args.clients)]
        for t in clients:
            t.start()
        for t in clients + threads:
            t.join()
        window = time.monotonic() - start
        rss_window = resident_mb(proc.pid)
        if args.batch:
            batch_thread.join(args.batch_wait)
        time.sleep(1)
        rss_after = resident_mb(proc.pid)
        try:
            health = httpx.get(url + "/healthz", timeout=10).json()
        except httpx.HTTPError as exc:
            health = {"status": type(exc).__name__}
        stopped = time.monotonic()
        stop(proc)
        shutdown_s = time.monotonic() - stopped

    for line in errors[:10]:
        print("  error:", line)
    held = np.array(stalls["held_s"]) if stalls["held_s"] else np.array([float("nan")])
    print(f"window {window:.1f} s; server open-file limit {args.open_files or 'unchanged'}")
    print(f"stalled: {stalls.get('opened', 0)} connections opened ({args.stalled} at a time); ended by the server: "
          f"{stalls['408']} with 408, {stalls['503']} with 503, {stalls['closed']} closed (idle, displaced); "
          f"held {np.median(held):.1f} s median, {held.max():.1f} s max; connect failures {stalls['connect_failed']}")
    bomb_ok = [s for s, _ in bombs if s == 200]
    bomb_lat = np.array([dt for _, dt in bombs]) if bombs else np.array([float("nan")])
    print(f"whitespace bombs: {len(bombs)} sent ({len(bomb_ok)} answered 200), "
          f"{len(bomb_body) // 1000} kB each, latency p50 {np.median(bomb_lat):.2f} s, max {bomb_lat.max():.2f} s")
    if args.batch:
        state = "finished" if "seconds" in batch else f"not finished after {args.batch_wait:.0f} s more"
        print(f"large batch: {args.batch} texts x {args.batch_chars} chars ({len(batch_body) / 1e6:.1f} MB): "
              f"{state}, status {batch.get('status')}, {batch.get('count')} rows, {batch.get('failed')} failed, "
              f"{batch.get('seconds', float('nan')):.1f} s")
    lat = np.array(ordinary) if ordinary else np.array([float("nan")])
    print(f"ordinary: {len(ordinary)} requests from {args.clients} clients, {len(ordinary) / window:.1f} req/s, "
          f"p50 {np.median(lat):.3f} s, p99 {np.percentile(lat, 99):.3f} s, max {lat.max():.3f} s")
    print("slowest ordinary: " + ", ".join(f"{dt:.2f} s at {at:.1f} s" for dt, at in sorted(slowest)[::-1][:5]))
    print(f"server resident memory: {rss_before:.0f} MB before, {rss_window:.0f} MB at the window's end, "
          f"{rss_after:.0f} MB after; /healthz after: {health.get('status')}, pending {health.get('pending')}; "
          f"stopped {shutdown_s:.1f} s after SIGTERM")
    print(f"hostile load: ordinary p99 {np.percentile(lat, 99):.2f} s, errors {len(errors)} (n={len(ordinary)})")


if __name__ == "__main__":
    main()
