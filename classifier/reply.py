"""Write the suggested reply (SPEC §8) from the templates in ``rules/replies.yaml``.

One part per finding, in a fixed order. Templates are checked on load: every
part must exist and use only the known placeholders, so a broken template is an
error at start-up, not a garbled reply.
"""
from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from . import spec
from .decide import Decision
from .errors import Errors, RulesError

PLACEHOLDERS = ("severity", "response_time", "clause_id", "clause_text", "category")
REQUIRED = ("greeting", "acknowledgement", "urgent_recovery", "multiple_issues", "missing_intro", "missing",
            "out_of_scope", "delay", "credentials_present", "attachment_format", "unofficial_channel", "closing")


def _walk(value: Any, path: str):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, str):
        yield path, value


def _line_of(file: str | Path, needle: str) -> int:
    """1-based line of the first occurrence of ``needle`` in ``file`` (0 when unknown)."""
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    return next((i for i, line in enumerate(lines, 1) if needle in line), 0)


def check_templates(templates: dict[str, Any], file: str | Path = "rules/replies.yaml") -> None:
    """Raise RulesError for a missing part or an unknown placeholder; ``file`` is
    where the templates were read, named in the message (with the line when found)."""
    missing = [k for k in REQUIRED if k not in templates]
    # parts keyed by severity / item / clause: a mapping with these keys (a plain string is not enough)
    for part, keys in (("acknowledgement", spec.SEVERITIES), ("missing", spec.MISSING_ITEMS),
                       ("out_of_scope", ("default",)), ("delay", ())):
        if part in templates:
            value = templates[part]
            missing += [f"{part}.{k}" for k in keys if not isinstance(value, dict) or k not in value]
            if not isinstance(value, dict) and not keys:
                missing.append(f"{part} (a mapping)")
    if missing:
        raise RulesError(Errors.E017.format(file=file, missing=", ".join(missing)))
    for path, text in _walk(templates, "templates"):
        for _, name, _, _ in string.Formatter().parse(text):
            if name is not None and name not in PLACEHOLDERS:
                raise RulesError(Errors.E016.format(file=file, line=_line_of(file, "{" + name), rule_id=path, name=name,
                                                    allowed=", ".join(PLACEHOLDERS)))


def _hours(h: int, templates: dict[str, Any]) -> str:
    """The response time in the reply's language: ``response_time`` templates are keyed
    by the hours (1, 24, 72); English words otherwise."""
    named = templates.get("response_time") or {}
    return str(named.get(str(h)) or named.get(h) or ("1 hour" if h == 1 else f"{h} hours"))


def write_reply(decision: Decision, templates: dict[str, Any], clause_texts: dict[str, str]) -> str:
    """The reply for one decision; every part comes from a template."""
    values = {
        "severity": decision.severity,
        "response_time": _hours(spec.RESPONSE_TIME_HOURS[decision.severity], templates),
        "clause_id": decision.clause,
        "clause_text": clause_texts.get(decision.clause, "").strip().rstrip("."),
        "category": decision.category,
    }
    fill = lambda t: t.format(**values)  # noqa: E731
    parts = [fill(templates["greeting"]), fill(templates["acknowledgement"][decision.severity])]
    flags, delays = set(decision.flags), set(decision.delay_reasons)
    if "urgent_recovery" in flags and decision.scope == "in_scope":
        parts.append(fill(templates["urgent_recovery"]))
    if decision.scope == "out_of_scope":
        oos = templates["out_of_scope"]
        section = decision.clause.rsplit(".", 2)[0]
        parts.append(fill(oos.get(decision.clause) or oos.get(section) or oos["default"]))
    if "multiple_issues" in flags:
        parts.append(fill(templates["multiple_issues"]))
    if decision.missing_info:
        lines = [fill(templates["missing_intro"])] + [fill(templates["missing"][i]) for i in decision.missing_info]
        parts.append("\n".join(lines))
    for reason in spec.DELAY_REASONS:
        if reason in delays and reason in templates["delay"]:
            if reason == "requires_custom_improvement" and decision.scope == "out_of_scope":
                continue  # the out-of-scope part already says where custom work goes
            parts.append(fill(templates["delay"][reason]))
    for flag in ("credentials_present", "attachment_format", "unofficial_channel"):
        if flag in flags:
            parts.append(fill(templates[flag]))
    parts.append(fill(templates["closing"]))
    return "\n\n".join(parts)
