"""Which literal strings a regular expression cannot match without.

The rule matcher and the secret masker skip a regex on a text that lacks them:
one pass over the text finds which of all these strings it contains
(:class:`GateScanner`), after which each regex's test is a set lookup, far cheaper
than running the regex; most regexes (URLs, versions, paths, keys) cannot match
most requests. The sets are derived from the parsed pattern, so they are exact: a
skipped regex could not have matched.

The analysis follows each element of the pattern with what it can say about the
text an element matches: every string it can match (when there are few), the
strings one of which it starts with, ends with, or contains. Concatenating two
elements joins the end of the first with the start of the second (``\\.`` then
``(?:com|net)`` gives ``.com``/``.net``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import ahocorasick

try:  # the parser behind ``re.compile`` (private: without it, regexes simply run ungated)
    from re import _constants as C, _parser as P
except ImportError:  # pragma: no cover
    C = P = None  # type: ignore[assignment]

#: Most strings a set may hold and still be worth testing for.
MAX_GATE_STRINGS = 128
#: Most strings kept while spelling out what an element can match.
MAX_SPELLED = 256
#: Characters too common in requests to be worth testing for on their own.
COMMON_CHARS = frozenset(" \t\n.,;:!?'\"()-/_")


def necessary_literals(pattern: str, flags: int = 0) -> list[frozenset[str]]:
    """Sets of lower-case strings such that every match contains one string of each set.

    Most selective sets first; empty when nothing useful can be said.
    """
    if P is None:
        return []
    try:
        info = _sequence(list(P.parse(pattern, flags)))
    except Exception:  # noqa: BLE001 - a gate is only a shortcut: without one the regex runs
        return []
    sets = list(info.factors)
    for s in (info.exact, info.prefix, info.suffix):
        if s is not None:
            sets.append(s)
    usable = {frozenset(s) for s in sets if _usable(s)}
    return sorted(usable, key=_score, reverse=True)


def _usable(strings: frozenset[str]) -> bool:
    if not strings or len(strings) > MAX_GATE_STRINGS:
        return False
    return all(len(s) >= 2 or (len(s) == 1 and s not in COMMON_CHARS and not s.isalnum()) for s in strings)


def _score(strings: frozenset[str]) -> tuple[int, int, int]:
    # long strings are rare, and so is one of a few strings
    shortest = min(map(len, strings))
    return (min(shortest, 6), -len(strings), shortest)


@dataclass
class _Info:
    """What is known about the text one element (or a sequence of them) matches."""

    exact: frozenset[str] | None = None   # every string it can match
    prefix: frozenset[str] | None = None  # one of these starts every match
    suffix: frozenset[str] | None = None  # one of these ends every match
    factors: list[frozenset[str]] = field(default_factory=list)  # one of each occurs in every match


_EMPTY = frozenset({""})


def _product(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None or b is None or len(a) * len(b) > MAX_SPELLED:
        return None
    return frozenset(x + y for x in a for y in b)


def _trim(s: frozenset[str] | None) -> frozenset[str] | None:
    """A prefix/suffix set is only worth keeping when no string in it is empty."""
    return s if s and "" not in s else None


def _starts(i: _Info) -> frozenset[str] | None:
    return i.exact if i.exact is not None else i.prefix


def _ends(i: _Info) -> frozenset[str] | None:
    return i.exact if i.exact is not None else i.suffix


def _concat(a: _Info, b: _Info) -> _Info:
    exact = _product(a.exact, b.exact)
    prefix = _product(a.exact, _starts(b) or _EMPTY) if a.exact is not None else a.prefix
    suffix = _product(_ends(a) or _EMPTY, b.exact) if b.exact is not None else b.suffix
    factors = a.factors + b.factors
    if exact is not None:
        # the parts' own strings are kept too: a narrower set may be the better test
        factors += [s for s in (a.exact, b.exact) if s and "" not in s]
        return _Info(exact, None, None, factors)
    for s in (_product(_ends(a), _starts(b)), a.exact, b.exact, a.prefix, b.suffix):
        if s and "" not in s:
            factors.append(s)
    return _Info(None, _trim(prefix), _trim(suffix), factors)


def _sequence(seq: list) -> _Info:
    info = _Info(exact=_EMPTY)
    run = ""  # consecutive literal characters, taken as one string
    for op, av in seq:
        if op is C.LITERAL:
            run += chr(av).lower()
            continue
        if run:
            info, run = _concat(info, _Info(exact=frozenset({run}))), ""
        info = _concat(info, _element(op, av))
    return _concat(info, _Info(exact=frozenset({run}))) if run else info


def _element(op, av) -> _Info:
    if op is C.LITERAL:
        return _Info(exact=frozenset({chr(av).lower()}))
    if op is C.IN:
        if all(o is C.LITERAL for o, _ in av) and len(av) <= 8:
            return _Info(exact=frozenset(chr(v).lower() for _, v in av))
        return _Info()
    if op is C.SUBPATTERN:
        return _sequence(list(av[-1]))
    if op is C.ATOMIC_GROUP:
        return _sequence(list(av))
    if op in (C.AT, C.ASSERT_NOT):  # zero-width, says nothing about the text
        return _Info(exact=_EMPTY)
    if op is C.ASSERT:  # zero-width, but what it looks at must be there
        inner = _sequence(list(av[1]))
        return _Info(exact=_EMPTY, factors=[f for f in _all_sets(inner) if "" not in f])
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
        low, high, item = av
        inner = _sequence(list(item))
        if low == 0:
            # optional: only "nothing or one of these" can be said, when it repeats at most once
            if high == 1 and inner.exact is not None:
                return _Info(exact=inner.exact | _EMPTY)
            return _Info()
        if low == high == 1:
            return inner
        return _Info(prefix=_trim(_starts(inner)), suffix=_trim(_ends(inner)),
                     factors=[f for f in _all_sets(inner) if "" not in f])
    if op is C.BRANCH:
        branches = [_sequence(list(b)) for b in av[1]]
        exact = _union([b.exact for b in branches])
        prefix = _union([_starts(b) for b in branches])
        suffix = _union([_ends(b) for b in branches])
        best = [max((s for s in _all_sets(b) if s and "" not in s), key=_score, default=None) for b in branches]
        factor = _union([s for s in best]) if all(s and "" not in s for s in best) else None
        if exact is not None:
            return _Info(exact, None, None, [factor] if factor else [])
        return _Info(None, _trim(prefix), _trim(suffix), [factor] if factor else [])
    return _Info()


def _union(sets: list[frozenset[str] | None]) -> frozenset[str] | None:
    if any(s is None for s in sets):
        return None
    out = frozenset().union(*sets)  # type: ignore[arg-type]
    return out if len(out) <= MAX_SPELLED else None


def _all_sets(info: _Info) -> list[frozenset[str]]:
    return [s for s in [*info.factors, info.exact, info.prefix, info.suffix] if s is not None]


#: A gate: sets of strings, one string of each of which a text must contain.
Gate = tuple[frozenset[str], ...]
#: Most sets kept in one regex's gate (the most selective first).
MAX_GATE_SETS = 3


def regex_gate(pattern: str, flags: int = 0) -> Gate:
    """The gate a lower-cased text must pass for ``pattern`` to match it (empty: none)."""
    return tuple(necessary_literals(pattern, flags)[:MAX_GATE_SETS])


class GateScanner:
    """Which of many strings a text contains, found in one pass over it (Aho-Corasick,
    from ``pyahocorasick``): every gate of a doc is then a few set lookups, however many
    regexes and strings there are."""

    def __init__(self, strings: Iterable[str]) -> None:
        self._automaton = ahocorasick.Automaton()
        for string in set(strings):
            if string:
                self._automaton.add_word(string, string)
        self._empty = len(self._automaton) == 0
        if not self._empty:
            self._automaton.make_automaton()

    def scan(self, lowered: str) -> set[str]:
        """The strings ``lowered`` contains (overlapping occurrences included)."""
        if self._empty:
            return set()
        return {string for _end, string in self._automaton.iter(lowered)}


def gate_strings(gates: Iterable[Gate]) -> set[str]:
    """Every string the gates test for, for a :class:`GateScanner`."""
    return {string for gate in gates for strings in gate for string in strings}


def passes(gate: Gate, found: set[str]) -> bool:
    """True when the text whose strings are ``found`` contains one string of every set."""
    for strings in gate:
        if strings.isdisjoint(found):
            return False
    return True
