"""Which of many regexes can match a text, in one linear-time pass (Hyperscan).

Both the rule matcher and the secret masker hold many regexes, most of which cannot
match most requests (URLs, versions, keys, tokens). Hyperscan reads the text once and
says which can; only those then run. In prefilter mode Hyperscan over-approximates
what it cannot run exactly (look-arounds, back-references), so a regex it leaves out
could not have matched.

Hyperscan unrolls a bounded repeat into states, so ``[\\w .-]{0,30}`` over Unicode takes
seconds to compile; the prefilter reads a repeat of more than a few as unbounded
(``{0,}``), which matches more texts, never fewer. Compiled databases are kept per
process: rules are loaded and checked more often than they change.
"""
from __future__ import annotations

import functools
import re
import threading

import hyperscan

_FLAGS = hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_UCP


def _flags(case_sensitive: bool) -> int:
    return _FLAGS if case_sensitive else _FLAGS | hyperscan.HS_FLAG_CASELESS


#: a bounded repeat "{m,n}" (not escaped); one of more than LOOSEN_ABOVE is read as "{m,}"
_BOUNDED = re.compile(r"(?<!\\)\{(\d+),(\d+)\}")
LOOSEN_ABOVE = 8


def loosened(pattern: str) -> str:
    """``pattern`` with its long bounded repeats unbounded: a superset, faster to compile."""
    return _BOUNDED.sub(lambda m: m.group(0) if int(m.group(2)) <= LOOSEN_ABOVE else "{%s,}" % m.group(1), pattern)


@functools.lru_cache(maxsize=32)
def _database(patterns: tuple[tuple[str, bool], ...]) -> hyperscan.Database:
    db = hyperscan.Database()
    db.compile(expressions=[loosened(p).encode() for p, _ in patterns], ids=list(range(len(patterns))),
               elements=len(patterns), flags=[_flags(case) for _, case in patterns])
    return db


@functools.lru_cache(maxsize=4096)
def hyperscan_error(pattern: str, case_sensitive: bool = False) -> str | None:
    """Why Hyperscan cannot prefilter ``pattern``, or None when it can."""
    try:
        hyperscan.Database().compile(expressions=[loosened(pattern).encode()], ids=[0], elements=1,
                                     flags=[_flags(case_sensitive)])
    except hyperscan.error as exc:
        return str(exc)
    return None


class Prefilter:
    """The regexes ``patterns`` (each with whether it is case-sensitive), compiled once."""

    def __init__(self, patterns: list[tuple[str, bool]]) -> None:
        self._db = None
        self._local = threading.local()  # Hyperscan scratch space is per thread
        if patterns:
            self._db = _database(tuple(patterns))

    def candidates(self, text: str) -> set[int]:
        """The indices of the patterns that may match ``text``."""
        if self._db is None or not text:
            return set()
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        found: set[int] = set()
        self._db.scan(text.encode("utf-8", "surrogatepass"), scratch=scratch,
                      match_event_handler=lambda i, _a, _b, _c, _d: found.add(i))
        return found
