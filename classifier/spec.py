"""The label contract of ../shared/SPEC.md as Python constants.

Every other module (rules, data checks, model, decisions, CLI) validates its ids
against these sets, so a typo in a rules file or a data row is caught on load.
"""
from __future__ import annotations

CATEGORIES: tuple[str, ...] = (
    "installation", "performance", "updates", "product_error", "development", "general", "other",
)

#: SLA section of each category (SPEC §3); `other` collects §1.3, §1.4 and §4.5.
CATEGORY_SECTIONS: dict[str, tuple[str, ...]] = {
    "installation": ("3.1",), "performance": ("3.2",), "updates": ("3.3",),
    "product_error": ("3.4",), "development": ("3.5",), "general": ("3.6",),
    "other": ("1.3", "1.4", "4.5"),
}

# (in-scope count, out-of-scope count) per section, in the SLA's bullet order.
_CLAUSE_COUNTS: dict[str, tuple[int, int]] = {
    "3.1": (5, 5), "3.2": (3, 3), "3.3": (2, 2), "3.4": (2, 4), "3.5": (2, 6),
    "3.6": (5, 0), "1.3": (0, 1), "1.4": (0, 1), "4.5": (0, 1),
}
_SECTION_CATEGORY = {s: c for c, ss in CATEGORY_SECTIONS.items() for s in ss}


def _clauses() -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for section, (n_in, n_out) in _CLAUSE_COUNTS.items():
        for i in range(1, n_in + 1):
            out[f"{section}.in.{i}"] = (_SECTION_CATEGORY[section], "in_scope")
        for i in range(1, n_out + 1):
            out[f"{section}.out.{i}"] = (_SECTION_CATEGORY[section], "out_of_scope")
    return out


#: clause id -> (category, scope); 42 ids.
CLAUSES: dict[str, tuple[str, str]] = _clauses()
SCOPES: tuple[str, ...] = ("in_scope", "out_of_scope")
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
RESPONSE_TIME_HOURS: dict[str, int] = {"critical": 1, "high": 1, "medium": 24, "low": 72}
MISSING_ITEMS: tuple[str, ...] = ("url", "version", "edition", "steps_to_reproduce")
REQUIRED_INFO: dict[str, tuple[str, ...]] = {
    "product_error": ("url", "version", "edition", "steps_to_reproduce"),
    "updates": ("url", "version", "edition", "steps_to_reproduce"),
    "installation": ("url", "version", "edition"),
    "performance": ("url", "version", "edition"),
    "development": (), "general": (), "other": (),
}
DELAY_REASONS: tuple[str, ...] = (
    "missing_information", "not_reproducible", "updates_not_installed",
    "requires_custom_improvement", "improper_use", "unlicensed_copy", "out_of_scope",
    "misleading_information", "abusive_language", "assistant_circumvention",
)
FLAGS: tuple[str, ...] = (
    "multiple_issues", "credentials_present", "attachment_format", "urgent_recovery",
    "unofficial_channel",
)
CHANNELS: tuple[str, ...] = ("webform", "live_chat", "email", "other")
OFFICIAL_CHANNELS: frozenset[str] = frozenset({"webform", "live_chat"})
PRODUCTS: tuple[str, ...] = ("cloud", "self_hosted")


def clause_category(clause: str) -> str:
    """Category a clause id belongs to (``3.5.out.6`` -> ``development``)."""
    return CLAUSES[clause][0]


def clause_scope(clause: str) -> str:
    """Scope a clause id implies (``.out.`` clauses are out of scope)."""
    return CLAUSES[clause][1]
