"""Which literal strings a regular expression cannot match without.

The rule matcher skips a regex on a text that contains none of them: testing a
text for a few short strings (``str.__contains__``) is far cheaper than running the
regex over it, and most regexes (URLs, versions, paths, keys) cannot match most
requests. The sets are derived from the parsed pattern, so they are exact: a
skipped regex could not have matched.
"""
from __future__ import annotations

import re
from re import _constants as C, _parser as P  # the parser behind ``re.compile``

#: A set is worth testing when its strings are not too common and there are at most
#: this many (testing one costs ~0.15 µs on a typical request, running a regex 5-15 µs).
MAX_GATE_STRINGS = 32
MAX_PRODUCT = 16
#: Characters too common in requests to be worth checking for on their own.
COMMON_CHARS = frozenset(" \t\n.,;:!?'\"()-/_")


def necessary_literals(pattern: str, flags: int = 0) -> list[frozenset[str]]:
    """Sets of lower-case strings such that every match contains one string of each set.

    Best (most selective) sets first; empty when nothing can be said.
    """
    try:
        tree = P.parse(pattern, flags)
    except re.error:
        return []
    sets = [s for s in _scan(list(tree)) if _usable(s)]
    return sorted(set(sets), key=_score, reverse=True)


def _usable(strings: frozenset[str]) -> bool:
    if not strings or len(strings) > MAX_GATE_STRINGS:
        return False
    return all(len(s) >= 2 or (len(s) == 1 and s not in COMMON_CHARS and not s.isalnum()) for s in strings)


def _score(strings: frozenset[str]) -> tuple[int, int]:
    return (min(min(map(len, strings)), 6), -len(strings))


def _chars(op, av) -> set[str] | None:
    """The characters one element matches when it is a literal or a small set of literals."""
    if op is C.LITERAL:
        return {chr(av).lower()}
    if op is C.IN and all(o is C.LITERAL for o, _ in av) and len(av) <= 4:
        return {chr(v).lower() for _, v in av}
    return None


def _scan(seq: list) -> list[frozenset[str]]:
    found: list[frozenset[str]] = []
    run: set[str] = {""}

    def flush() -> None:
        nonlocal run
        if run != {""}:
            found.append(frozenset(run))
        run = {""}

    for op, av in seq:
        chars = _chars(op, av)
        if chars is not None and len(run) * len(chars) <= MAX_PRODUCT:
            run = {r + c for r in run for c in chars}
            continue
        flush()
        if op is C.SUBPATTERN:
            found += _scan(list(av[-1]))
        elif op is C.ATOMIC_GROUP:
            found += _scan(list(av))
        elif op is C.ASSERT:
            found += _scan(list(av[1]))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT) and av[0] >= 1:
            found += _scan(list(av[2]))
        elif op is C.BRANCH:
            union: set[str] = set()
            for branch in av[1]:
                options = [s for s in _scan(list(branch)) if s and all(s)]
                if not options:
                    union = set()
                    break
                union |= max(options, key=_score)
            if union and len(union) <= MAX_GATE_STRINGS:
                found.append(frozenset(union))
    flush()
    return found
