"""The desk's store: requests (masked), their results, agents' corrections, desk users.

SQLAlchemy Core over SQLite by default (a file, no server) or PostgreSQL when
``$INTAKE_DATABASE_URL`` names one. The schema is created and upgraded by the Alembic
migrations in ``classifier/migrations`` when the store is opened, so upgrading intake
keeps the data.

Nothing secret reaches the database: :meth:`Store.add_ticket` masks the text, the subject
and the attachment names itself (:mod:`.normalise` / :mod:`.masking`), whatever its
caller did, and so does :meth:`Store.set_reply` with an agent's edited reply.

A ticket keeps the result as intake gave it (``result``) and the labels as they are now
(``labels``: the result's, with agents' corrections laid over). Each correction is a row
of its own: which field, old and new value, who, when, and the model and rules digests
behind the original answer.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from sqlalchemy import (JSON, Boolean, Column, DateTime, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        create_engine, event, func, select)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError

from . import spec
from .errors import Errors, InputError, IntakeError
from .masking import mask_secrets
from .normalise import masked_text
from .request import Request

ENV_DATABASE_URL = "INTAKE_DATABASE_URL"
#: Without ``$INTAKE_DATABASE_URL``: a SQLite file in the folder the service runs in.
DEFAULT_DATABASE_URL = "sqlite:///intake.db"
STATUSES = ("open", "reply_sent", "closed")
#: Label fields an agent can correct; ``scope`` follows the clause.
LABEL_FIELDS = ("category", "clause", "severity", "missing_info", "delay_reasons", "flags")
#: The queue's filters (query parameters of ``/desk``) and the ticket columns they read.
FILTERS = ("category", "scope", "severity", "needs_review", "language", "status")
MAX_QUEUE = 500

audit_log = logging.getLogger("intake.audit")

metadata = MetaData()

tickets = Table(
    "tickets", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(200), nullable=False, unique=True),
    Column("subject", Text),
    Column("text", Text, nullable=False),
    Column("channel", String(20)),
    Column("product", String(20)),
    Column("attachments", JSON, nullable=False),
    Column("given_language", String(16)),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("result", JSON, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("category", String(32), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("needs_review", Boolean, nullable=False),
    Column("language", String(16), nullable=False),
    Column("reply", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("model_sha256", String(64)),
    Column("rules_digest", String(64), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(100), nullable=False),
    Index("ix_tickets_status_due", "status", "due_at"),
)

corrections = Table(
    "corrections", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("ticket_seq", Integer, ForeignKey("tickets.seq", ondelete="CASCADE"), nullable=False, index=True),
    Column("field", String(32), nullable=False),
    Column("old", JSON),
    Column("new", JSON),
    Column("by", String(100), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("model_sha256", String(64)),
    Column("rules_digest", String(64), nullable=False),
)

users = Table(
    "users", metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

settings = Table(
    "settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


def database_url(given: str | None = None) -> str:
    """``given``, else ``$INTAKE_DATABASE_URL``, else :data:`DEFAULT_DATABASE_URL`;
    ``postgresql://`` and ``postgres://`` are read with psycopg 3."""
    url = given or os.environ.get(ENV_DATABASE_URL, "").strip() or DEFAULT_DATABASE_URL
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    return url


def shown_url(url: str) -> str:
    """The database URL as logs and messages may show it: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite gives datetimes back without a time zone; every one stored is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the desk) do not wait for a writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each WAL checkpoint; safe from corruption
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def labels_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The correctable labels of a SPEC §2 result (the main clause is its first)."""
    clauses = result.get("clauses") or []
    return {"category": result["category"], "scope": result["scope"],
            "clause": clauses[0]["id"] if clauses else None, "severity": result["severity"],
            "missing_info": list(result.get("missing_info") or []),
            "delay_reasons": list(result.get("delay_reasons") or []), "flags": list(result.get("flags") or [])}


class TicketConflict(IntakeError):
    """A ticket with this id is stored already, with another text."""


class Store:
    """Tickets, corrections, users and settings in one database (see the module doc)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite has one writer at a time; a writer that finds the file locked sleeps in
        # growing steps (up to 100 ms), so this process's writers queue here instead
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction (one at a time on SQLite)."""
        with self._write_lock if self._write_lock is not None else nullcontext():
            with self.engine.begin() as conn:
                yield conn

    @classmethod
    def open(cls, url: str | None = None) -> "Store":
        """Connect to ``url`` (see :func:`database_url`) and bring its schema up to date."""
        from . import migrations

        url = database_url(url)
        try:
            parsed = make_url(url)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad setting
            raise IntakeError(Errors.E071.format(url="(not shown)", problem=f"not a database URL ({type(exc).__name__})")) from None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_pre_ping=True)
        if parsed.get_backend_name() == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        try:
            migrations.upgrade(engine)
        except IntakeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a server down, a bad password, a read-only file
            raise IntakeError(Errors.E071.format(url=shown_url(url), problem=f"{type(exc).__name__}: "
                                                 f"{str(exc).splitlines()[0][:300] if str(exc) else ''}")) from None
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- tickets -----------------------------------------------------------------------
    def add_ticket(self, request: Request, result: Mapping[str, Any], *, by: str,
                   received_at: datetime | None = None, model_sha256: str | None = None,
                   rules_digest: str = "") -> tuple[dict[str, Any], bool]:
        """Store a classified request, masked; (the ticket, True) when it is new, (the
        stored ticket, False) when this id was stored before with the same text.
        Raises :class:`TicketConflict` when the id is taken by another text."""
        if not request.id:
            raise InputError(Errors.E072.format(where=""), field="id")
        text = masked_text(request.text)[0]
        subject = mask_secrets(request.subject).text if request.subject else None
        received = _utc(received_at) or now()
        labels = labels_of(result)
        row = {"id": request.id, "subject": subject, "text": text, "channel": request.channel,
               "product": request.product, "attachments": [mask_secrets(a).text for a in request.attachments],
               "given_language": request.language, "received_at": received,
               "due_at": received + timedelta(hours=spec.RESPONSE_TIME_HOURS[labels["severity"]]),
               "result": dict(result), "labels": labels, "category": labels["category"], "scope": labels["scope"],
               "severity": labels["severity"], "needs_review": bool(result.get("needs_review")),
               "language": result.get("language") or "", "reply": result.get("suggested_reply") or "",
               "status": "open", "model_sha256": model_sha256, "rules_digest": rules_digest,
               "created_by": by, "updated_at": now(), "updated_by": by}
        try:
            with self._writing() as conn:
                seq = conn.execute(tickets.insert(), row).inserted_primary_key[0]
        except IntegrityError:
            stored = self.get_ticket(request.id)
            if stored is None:  # pragma: no cover - an integrity error of another kind
                raise
            if (stored["text"], stored["subject"]) != (text, subject):
                raise TicketConflict(Errors.E073.format(id=request.id)) from None
            return stored, False
        audit_log.info("who=%s action=store ticket=%s", by, request.id)
        return {**row, "seq": seq, "corrections": []}, True

    def get_ticket(self, ticket_id: str | None = None, *, seq: int | None = None) -> dict[str, Any] | None:
        """One ticket by id (or by ``seq``, the desk's number) with its corrections, oldest first."""
        where = tickets.c.seq == seq if seq is not None else tickets.c.id == ticket_id
        with self.engine.connect() as conn:
            row = conn.execute(select(tickets).where(where)).mappings().first()
            if row is None:
                return None
            fixes = conn.execute(select(corrections).where(corrections.c.ticket_seq == row["seq"])
                                 .order_by(corrections.c.seq)).mappings().all()
        return {**_ticket(row), "corrections": [_correction(c) for c in fixes]}

    def queue(self, filters: Mapping[str, str] | None = None, *, at: datetime | None = None,
              limit: int = MAX_QUEUE) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Tickets matching ``filters`` (status ``open`` unless another is asked for;
        ``all`` for every status), soonest due first; and counts: ``total``, ``overdue``,
        and per filter column the matching tickets per value (ignoring that column's
        own filter, so the choices in a filter show what picking each would give)."""
        filters = {k: v for k, v in (filters or {}).items() if k in FILTERS and v not in (None, "")}
        filters.setdefault("status", "open")
        at = at or now()

        def conditions(skip: str | None = None) -> list[Any]:
            out = []
            for name, value in filters.items():
                if name == skip or (name == "status" and value == "all"):
                    continue
                if name == "needs_review":
                    out.append(tickets.c.needs_review.is_(value in ("1", "true", "yes")))
                else:
                    out.append(tickets.c[name] == value)
            return out

        with self.engine.connect() as conn:
            rows = conn.execute(select(tickets.c.seq, tickets.c.id, tickets.c.subject, tickets.c.text,
                                       tickets.c.category, tickets.c.scope, tickets.c.severity,
                                       tickets.c.needs_review, tickets.c.language, tickets.c.status,
                                       tickets.c.received_at, tickets.c.due_at, tickets.c.labels)
                                .where(*conditions()).order_by(tickets.c.due_at, tickets.c.seq).limit(limit)
                                ).mappings().all()
            total = conn.execute(select(func.count()).select_from(tickets).where(*conditions())).scalar_one()
            overdue = conn.execute(select(func.count()).select_from(tickets).where(
                *conditions(), tickets.c.due_at < at, tickets.c.status == "open")).scalar_one()
            per: dict[str, dict[str, int]] = {}
            for name in FILTERS:
                column = tickets.c[name]
                per[name] = {str(v).lower() if isinstance(v, bool) else str(v): n for v, n in conn.execute(
                    select(column, func.count()).where(*conditions(skip=name)).group_by(column).order_by(column))}
        queue = []
        for r in rows:
            item = dict(r)
            item["received_at"], item["due_at"] = _utc(r["received_at"]), _utc(r["due_at"])
            item["overdue"] = r["status"] == "open" and item["due_at"] < at
            item["clause"] = (r["labels"] or {}).get("clause")
            queue.append(item)
        return queue, {"total": total, "overdue": overdue, "shown": len(queue), "per": per, "filters": filters}

    # -- agents' writes ------------------------------------------------------------------
    def correct(self, ticket_id: str, given: Mapping[str, Any], *, by: str) -> list[dict[str, Any]]:
        """Lay an agent's labels over a ticket's; one correction row per changed field.

        ``given`` holds any of :data:`LABEL_FIELDS`; the clause must belong to the
        category, missing items must be ones the category requires. ``scope`` follows
        the clause, and the delay reasons ``missing_information`` and ``out_of_scope``
        follow missing_info and scope (SPEC §6), so a stored row is always consistent."""
        ticket = self.get_ticket(ticket_id)
        if ticket is None:
            raise InputError(Errors.E074.format(id=ticket_id))
        old = ticket["labels"]
        new = {**old, **{k: v for k, v in given.items() if k in LABEL_FIELDS}}
        new = _checked_labels(new)
        changes = [{"field": f, "old": old.get(f), "new": new[f]} for f in ("category", "scope", *LABEL_FIELDS[1:])
                   if _differs(old.get(f), new[f])]
        if not changes:
            return []
        at = now()
        values: dict[str, Any] = {"labels": new, "category": new["category"], "scope": new["scope"],
                                  "severity": new["severity"], "updated_at": at, "updated_by": by}
        if new["severity"] != old.get("severity"):
            values["due_at"] = _utc(ticket["received_at"]) + timedelta(hours=spec.RESPONSE_TIME_HOURS[new["severity"]])
        with self._writing() as conn:
            conn.execute(tickets.update().where(tickets.c.seq == ticket["seq"]).values(**values))
            conn.execute(corrections.insert(), [{"ticket_seq": ticket["seq"], **c, "by": by, "at": at,
                                                 "model_sha256": ticket["model_sha256"],
                                                 "rules_digest": ticket["rules_digest"]} for c in changes])
        audit_log.info("who=%s action=correct ticket=%s fields=%s", by, ticket_id,
                       ",".join(c["field"] for c in changes))
        return changes

    def set_reply(self, ticket_id: str, reply: str, *, by: str) -> None:
        """Keep an agent's edit of the reply (masked: an agent may paste a secret too)."""
        self._update(ticket_id, {"reply": mask_secrets(reply).text}, by, "edit_reply")

    def set_status(self, ticket_id: str, status: str, *, by: str) -> None:
        if status not in STATUSES:
            raise InputError(Errors.E083.format(field="status", value=status[:40], allowed=", ".join(STATUSES)),
                             field="status")
        self._update(ticket_id, {"status": status}, by, f"status_{status}")

    def _update(self, ticket_id: str, values: dict[str, Any], by: str, action: str) -> None:
        with self._writing() as conn:
            done = conn.execute(tickets.update().where(tickets.c.id == ticket_id)
                                .values(**values, updated_at=now(), updated_by=by))
        if done.rowcount == 0:
            raise InputError(Errors.E074.format(id=ticket_id))
        audit_log.info("who=%s action=%s ticket=%s", by, action, ticket_id)

    def corrected(self) -> Iterable[dict[str, Any]]:
        """Every ticket an agent corrected at least one label of, oldest first, with its corrections."""
        with self.engine.connect() as conn:
            ids = conn.execute(select(tickets.c.id).where(tickets.c.seq.in_(select(corrections.c.ticket_seq)))
                               .order_by(tickets.c.seq)).scalars().all()
        for ticket_id in ids:
            ticket = self.get_ticket(ticket_id)
            if ticket is not None:
                yield ticket

    # -- users and settings ----------------------------------------------------------------
    def add_user(self, name: str, password_hash: str) -> None:
        """Add a desk user, or set a new password for an existing one."""
        with self._writing() as conn:
            done = conn.execute(users.update().where(users.c.name == name).values(password_hash=password_hash))
            if done.rowcount == 0:
                conn.execute(users.insert().values(name=name, password_hash=password_hash, created_at=now()))
        audit_log.info("who=cli action=user_set user=%s", name)

    def password_hash(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(users.c.password_hash).where(users.c.name == name)).scalar_one_or_none()

    def user_names(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(users.c.name).order_by(users.c.name)).scalars())

    def setting(self, key: str, make: Any = lambda: secrets.token_urlsafe(48)) -> str:
        """The stored value of ``key``; the first caller stores ``make()`` (e.g. the secret
        that signs desk sessions, so sessions outlive a restart and workers agree on it)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar_one_or_none()
        if value is not None:
            return value
        try:
            with self._writing() as conn:
                conn.execute(settings.insert().values(key=key, value=make()))
        except IntegrityError:  # another worker stored it first
            pass
        with self.engine.connect() as conn:
            return conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar_one()


def _ticket(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("received_at", "due_at", "updated_at"):
        out[key] = _utc(out[key])
    return out


def _correction(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["at"] = _utc(out["at"])
    return out


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return sorted(a or []) != sorted(b or [])
    return a != b


def _checked_labels(labels: dict[str, Any]) -> dict[str, Any]:
    """``labels`` validated against SPEC and made consistent (see :meth:`Store.correct`)."""
    def one_of(field: str, allowed: Iterable[str]) -> str:
        value = labels.get(field)
        allowed = tuple(allowed)
        if value not in allowed:
            raise InputError(Errors.E083.format(field=field, value=str(value)[:40], allowed=", ".join(allowed)),
                             field=field)
        return value

    def some_of(field: str, allowed: Iterable[str]) -> list[str]:
        values = labels.get(field) or []
        values = [values] if isinstance(values, str) else list(values)
        allowed = tuple(allowed)
        bad = [v for v in values if v not in allowed]
        if bad:
            raise InputError(Errors.E083.format(field=field, value=str(bad[0])[:40], allowed=", ".join(allowed)),
                             field=field)
        return [v for v in allowed if v in values]  # SPEC order, no repeats

    category = one_of("category", spec.CATEGORIES)
    clause = one_of("clause", spec.CLAUSES)
    if spec.clause_category(clause) != category:
        raise InputError(Errors.E075.format(clause=clause, of=spec.clause_category(clause), category=category),
                         field="clause")
    missing = some_of("missing_info", spec.MISSING_ITEMS)
    extra = [m for m in missing if m not in spec.REQUIRED_INFO[category]]
    if extra:
        raise InputError(Errors.E076.format(items=", ".join(extra), category=category,
                                            required=", ".join(spec.REQUIRED_INFO[category]) or "nothing"),
                         field="missing_info")
    scope = spec.clause_scope(clause)
    delays = set(some_of("delay_reasons", spec.DELAY_REASONS)) - {"missing_information", "out_of_scope"}
    delays |= {"missing_information"} if missing else set()
    delays |= {"out_of_scope"} if scope == "out_of_scope" else set()
    return {"category": category, "scope": scope, "clause": clause, "severity": one_of("severity", spec.SEVERITIES),
            "missing_info": missing, "delay_reasons": [d for d in spec.DELAY_REASONS if d in delays],
            "flags": some_of("flags", spec.FLAGS)}
