"""The output contract (SPEC §2): one result per request, and its JSON Schema."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import spec


@dataclass
class Result:
    """What intake says about one request (or, with ``error`` set, why it could not)."""

    id: str | None
    category: str | None = None
    scope: str | None = None
    clauses: list[dict[str, str]] = field(default_factory=list)  # [{"id", "sla"}], most specific first
    severity: str | None = None
    response_time_hours: int | None = None
    missing_info: list[str] = field(default_factory=list)
    delay_reasons: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    confidence: float | None = None
    needs_review: bool = False
    explanation: dict[str, Any] = field(default_factory=dict)
    suggested_reply: str | None = None
    #: ISO 639-1 code of the request's main language (SPEC §9)
    language: str | None = None
    error: dict[str, Any] | None = None
    #: the request's text with secrets masked, when asked for (``include_text``)
    text: str | None = None
    #: the request's row in its batch (1-based), for messages; not part of the output
    row: int | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of SPEC §2; an error row carries only ``id`` and ``error``."""
        if self.error is not None:
            return {"id": self.id, "error": self.error}
        # built by hand: dataclasses.asdict deep-copies the explanation, which costs more
        # than the rest of the output stage; every value here is already fresh per request
        return {"id": self.id, "category": self.category, "scope": self.scope,
                "clauses": [dict(c) for c in self.clauses], "severity": self.severity,
                "response_time_hours": self.response_time_hours, "missing_info": list(self.missing_info),
                "delay_reasons": list(self.delay_reasons), "flags": list(self.flags),
                "confidence": self.confidence, "needs_review": self.needs_review,
                "explanation": self.explanation, "suggested_reply": self.suggested_reply,
                "language": self.language,
                **({"text": self.text} if self.text is not None else {})}


_STRING_LIST = {"type": "array", "items": {"type": "string"}}


def result_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one output line: a result or an error row."""
    result = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "category", "scope", "clauses", "severity", "response_time_hours", "missing_info",
                     "delay_reasons", "flags", "confidence", "needs_review", "explanation", "suggested_reply",
                     "language"],
        "properties": {
            "id": {"type": ["string", "null"]},
            "category": {"enum": list(spec.CATEGORIES)},
            "scope": {"enum": list(spec.SCOPES)},
            "clauses": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["id", "sla"], "additionalProperties": False,
                "properties": {"id": {"enum": list(spec.CLAUSES)}, "sla": {"type": "string"}}}},
            "severity": {"enum": list(spec.SEVERITIES)},
            "response_time_hours": {"enum": sorted(set(spec.RESPONSE_TIME_HOURS.values()))},
            "missing_info": {"type": "array", "uniqueItems": True, "items": {"enum": list(spec.MISSING_ITEMS)}},
            "delay_reasons": {"type": "array", "uniqueItems": True, "items": {"enum": list(spec.DELAY_REASONS)}},
            "flags": {"type": "array", "uniqueItems": True, "items": {"enum": list(spec.FLAGS)}},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "needs_review": {"type": "boolean"},
            "explanation": {"type": "object", "required": ["rules", "model", "policy"], "properties": {
                "rules": {"type": "array", "items": {"type": "object", "required": ["id", "kind", "label", "matched"],
                                                      "properties": {"id": {"type": "string"}, "matched": _STRING_LIST}}},
                "model": {"type": "object"},
                "policy": {"type": "object"},
                "review_reasons": _STRING_LIST,
                "language": {"type": "object", "required": ["code", "source", "supported"], "properties": {
                    "code": {"type": "string", "pattern": "^[a-z]{2}$"},
                    "source": {"enum": ["given", "detected", "default"]},
                    "supported": {"type": "boolean"},
                    "rules_read": {"type": "string", "pattern": "^[a-z]{2}$", "description":
                                   "the language the rules read a forwarded message in, when not the request's"}}},
            }},
            "suggested_reply": {"type": "string"},
            "language": {"type": "string", "pattern": "^[a-z]{2}$",
                         "description": "ISO 639-1 code of the request's main language: given or detected (SPEC §9)"},
            "text": {"type": "string", "description": "the request text with secrets masked (--include-text)"},
        },
    }
    error = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "error"],
        "properties": {
            "id": {"type": ["string", "null"]},
            "error": {"type": "object", "required": ["row", "message"], "properties": {
                "row": {"type": ["integer", "string"]}, "field": {"type": ["string", "null"]},
                "message": {"type": "string"}}},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/intake-classifier/intake/schema/result.json",
        "title": "intake result",
        "description": "One classified support request (SPEC §2), or an error row for a request that could not be read.",
        "oneOf": [result, error],
    }
