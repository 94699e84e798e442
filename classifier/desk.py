"""The agents' desk at ``/desk``: the queue, one request's page, corrections, the reply.

Server-rendered (Jinja2 templates in ``desk_templates/``, a stylesheet and a small
script in ``desk_static/``, all package data: no build step, nothing from a CDN). Plain
HTML forms do every write, so the desk works from the keyboard and without the script;
the script only copies the reply and narrows the clause list to the chosen category.

Access: an agent logs in (``intake users add NAME`` makes one); the session is a cookie
signed with a secret kept in the store; every form carries the session's CSRF token
and every POST checks it. A page asked for without a session redirects to the login
page. Every write goes through :class:`~classifier.store.Store`, which masks what it
stores and logs who wrote what.
"""
from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import spec
from .access import csrf_ok, csrf_token, verify_password
from .errors import Errors, IntakeError
from .store import FILTERS, STATUSES, Store, now

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "intake_desk"
SESSION_HOURS = 12
LOGIN_CHECKS_AT_ONCE = 2
#: Only our own files: no inline script, no other origin.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

#: What the page says after a write (the ``saved`` query parameter names which).
SAVED = {"labels": "Correction saved.", "nothing": "No label changed: nothing saved.", "reply": "Reply saved.",
         "status": "Status saved."}

audit_log = logging.getLogger("intake.audit")
templates = Jinja2Templates(directory=str(HERE / "desk_templates"))


class LoginRequired(Exception):
    """A desk page was asked for without a session: the login page answers."""


class BadForm(Exception):
    """A desk form came without the session's CSRF token."""


def highlighted(text: str, rules: list[dict[str, Any]]) -> Markup:
    """``text`` (HTML-escaped) with every word a fired rule matched wrapped in
    ``<mark>``, titled with the rule ids. The matched words are looked up in the masked
    text (case-insensitively, whole words where they start or end with a letter or
    digit); overlapping matches merge into one mark that names all their rules."""
    spans: list[tuple[int, int, str]] = []
    for rule in rules:
        for words in rule.get("matched") or []:
            words = words.strip()
            if not words:
                continue
            pattern = re.escape(words).replace(r"\ ", r"\s+")
            if words[0].isalnum():
                pattern = r"(?<!\w)" + pattern
            if words[-1].isalnum():
                pattern += r"(?!\w)"
            spans += [(m.start(), m.end(), rule["id"]) for m in re.finditer(pattern, text, re.I)]
    spans.sort()
    merged: list[list[Any]] = []
    for start, end, rule_id in spans:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            if rule_id not in merged[-1][2]:
                merged[-1][2].append(rule_id)
        else:
            merged.append([start, end, [rule_id]])
    out, done = [], 0
    for start, end, ids in merged:
        out += [escape(text[done:start]),
                Markup('<mark title="{}" data-rules="{}">{}</mark>').format(", ".join(ids), " ".join(ids),
                                                                              text[start:end])]
        done = end
    out.append(escape(text[done:]))
    return Markup("").join(out)


def due_in(due: datetime, at: datetime) -> str:
    """"in 3 h 20 min" / "overdue by 40 min"."""
    minutes = int((due - at).total_seconds() // 60)
    span = abs(minutes)
    told = f"{span // 1440} d {span % 1440 // 60} h" if span >= 1440 else (
        f"{span // 60} h {span % 60} min" if span >= 60 else f"{span} min")
    return f"overdue by {told}" if minutes < 0 else f"in {told}"


def add_desk(app: FastAPI, store: Store) -> None:
    """Mount the desk's pages, static files and session handling on ``app``."""
    clause_texts: dict[str, str] = {}
    #: password checks at a time: each takes ~32 MiB and ~0.1 s (scrypt), so a flood of
    #: logins waits here instead of filling the memory
    login_slots = asyncio.Semaphore(LOGIN_CHECKS_AT_ONCE)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("user", request.session.get("user"))
        context["csrf"] = csrf_token(request.session)
        response = templates.TemplateResponse(request, name, context, status_code=status)
        response.headers.update(SECURITY_HEADERS)
        return response

    def agent(request: Request) -> str:
        user = request.session.get("user")
        if not user:
            raise LoginRequired
        return user

    async def checked_form(request: Request) -> dict[str, Any]:
        form = await request.form()
        if not csrf_ok(request.session, form.get("csrf")):
            raise BadForm
        return {k: form.getlist(k) if k in ("missing_info", "delay_reasons", "flags") else form.get(k)
                for k in form.keys()}

    def texts() -> dict[str, str]:
        if not clause_texts and getattr(app.state, "classifier", None) is not None:
            clause_texts.update(app.state.classifier.clause_texts)
        return clause_texts

    async def ticket_or_404(request: Request, seq: int) -> dict[str, Any] | HTMLResponse:
        ticket = await run_in_threadpool(store.get_ticket, seq=seq)
        if ticket is None:
            return page(request, "missing.html", 404, what=f"request #{seq}")
        return ticket

    async def login_page(request: Request, next: str = "/desk") -> HTMLResponse:
        return page(request, "login.html", next=next if next.startswith("/desk") else "/desk")

    async def login(request: Request) -> Response:
        form = await request.form()
        target = str(form.get("next") or "/desk")
        target = target if target.startswith("/desk") and not target.startswith("//") else "/desk"
        if not csrf_ok(request.session, form.get("csrf")):
            return page(request, "login.html", 403, error=Errors.E078, next=target)
        name, password = str(form.get("name") or ""), str(form.get("password") or "")
        stored = await run_in_threadpool(store.password_hash, name) if name else None
        async with login_slots:
            known = await run_in_threadpool(verify_password, password, stored)
        if not known:
            audit_log.info("who=- action=login_failed")
            return page(request, "login.html", 401, error="Wrong user name or password.", next=target)
        request.session.clear()  # a fresh session (and CSRF token) after logging in
        request.session["user"] = name
        audit_log.info("who=%s action=login", name)
        return RedirectResponse(target, status_code=303)

    async def logout(request: Request) -> Response:
        form = await request.form()
        if csrf_ok(request.session, form.get("csrf")):
            audit_log.info("who=%s action=logout", request.session.get("user", "-"))
            request.session.clear()
        return RedirectResponse("/desk/login", status_code=303)

    async def queue(request: Request) -> HTMLResponse:
        agent(request)
        chosen = {k: request.query_params.get(k, "") for k in FILTERS}
        at = now()
        rows, counts = await run_in_threadpool(store.queue, chosen, at=at)
        for row in rows:
            row["due_in"] = due_in(row["due_at"], at)
            row["title"] = row["subject"] or (row["text"].strip().splitlines() or [""])[0][:120]
        options = {"category": spec.CATEGORIES, "scope": spec.SCOPES, "severity": spec.SEVERITIES,
                   "needs_review": ("true", "false"), "language": sorted(counts["per"]["language"]),
                   "status": (*STATUSES, "all")}
        return page(request, "queue.html", rows=rows, counts=counts, chosen=counts["filters"], options=options)

    async def ticket_page(request: Request, seq: int) -> HTMLResponse:
        return await render_ticket(request, seq)

    async def render_ticket(request: Request, seq: int, error: str | None = None, status: int = 200) -> HTMLResponse:
        agent(request)
        ticket = await ticket_or_404(request, seq)
        if isinstance(ticket, HTMLResponse):
            return ticket
        result, labels = ticket["result"], ticket["labels"]
        explanation = result.get("explanation") or {}
        rules = explanation.get("rules") or []
        required = spec.REQUIRED_INFO[labels["category"]]
        at = now()
        context = {
            "t": ticket, "result": result, "labels": labels, "rules": rules,
            "text": highlighted(ticket["text"], rules),
            "subject": highlighted(ticket["subject"], rules) if ticket["subject"] else None,
            "clauses": [{"id": c["id"], "sla": c.get("sla") or texts().get(c["id"], "")} for c in result["clauses"]],
            "main_clause_sla": texts().get(labels["clause"], ""),
            "checklist": [(item, item not in labels["missing_info"]) for item in required],
            "model": explanation.get("model") or {}, "review_reasons": explanation.get("review_reasons") or [],
            "language_info": explanation.get("language") or {},
            "due_in": due_in(ticket["due_at"], at), "overdue": ticket["status"] == "open" and ticket["due_at"] < at,
            "response_hours": spec.RESPONSE_TIME_HOURS[labels["severity"]],
            "spec": spec, "clauses_by_category": {c: [k for k, (cat, _) in spec.CLAUSES.items() if cat == c]
                                                 for c in spec.CATEGORIES},
            "clause_texts": texts(), "statuses": STATUSES, "error": error,
            "saved": SAVED.get(request.query_params.get("saved", "")) if error is None else None,
        }
        return page(request, "ticket.html", status, **context)

    async def correct(request: Request, seq: int) -> Response:
        user = agent(request)
        form = await checked_form(request)
        ticket = await ticket_or_404(request, seq)
        if isinstance(ticket, HTMLResponse):
            return ticket
        given = {k: form.get(k, []) if k in ("missing_info", "delay_reasons", "flags") else form.get(k)
                 for k in ("category", "clause", "severity", "missing_info", "delay_reasons", "flags")}
        try:
            changes = await run_in_threadpool(store.correct, ticket["id"], given, by=user)
        except IntakeError as exc:
            return await render_ticket(request, seq, error=str(exc), status=422)
        return RedirectResponse(f"/desk/tickets/{seq}?saved={'labels' if changes else 'nothing'}#labels",
                                status_code=303)

    async def save_reply(request: Request, seq: int) -> Response:
        user = agent(request)
        form = await checked_form(request)
        ticket = await ticket_or_404(request, seq)
        if isinstance(ticket, HTMLResponse):
            return ticket
        await run_in_threadpool(store.set_reply, ticket["id"], str(form.get("reply") or ""), by=user)
        return RedirectResponse(f"/desk/tickets/{seq}?saved=reply#reply", status_code=303)

    async def set_status(request: Request, seq: int) -> Response:
        user = agent(request)
        form = await checked_form(request)
        ticket = await ticket_or_404(request, seq)
        if isinstance(ticket, HTMLResponse):
            return ticket
        try:
            await run_in_threadpool(store.set_status, ticket["id"], str(form.get("status") or ""), by=user)
        except IntakeError as exc:
            return await render_ticket(request, seq, error=str(exc), status=422)
        return RedirectResponse(f"/desk/tickets/{seq}?saved=status", status_code=303)

    async def on_login_required(request: Request, _exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/desk/login?" + urlencode({"next": target}), status_code=303)

    async def on_bad_form(request: Request, _exc: BadForm) -> Response:
        return page(request, "missing.html", 403, error=Errors.E078, what=None)

    async def to_queue() -> Response:
        return RedirectResponse("/desk", status_code=307)

    for path, endpoint, methods in (
            ("/desk", queue, ["GET"]), ("/desk/", to_queue, ["GET"]),
            ("/desk/login", login_page, ["GET"]), ("/desk/login", login, ["POST"]),
            ("/desk/logout", logout, ["POST"]),
            ("/desk/tickets/{seq:int}", ticket_page, ["GET"]),
            ("/desk/tickets/{seq:int}/labels", correct, ["POST"]),
            ("/desk/tickets/{seq:int}/reply", save_reply, ["POST"]),
            ("/desk/tickets/{seq:int}/status", set_status, ["POST"])):
        app.add_api_route(path, endpoint, methods=methods, include_in_schema=False, response_class=HTMLResponse)
    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(BadForm, on_bad_form)
    app.mount("/desk/static", StaticFiles(directory=str(HERE / "desk_static")), name="desk-static")
    app.add_middleware(SessionMiddleware, secret_key=store.setting("session_secret"), session_cookie=SESSION_COOKIE,
                       max_age=SESSION_HOURS * 3600, same_site="lax", path="/desk")

