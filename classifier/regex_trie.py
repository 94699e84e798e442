"""Compile a regex with its alternations grouped by first character, as a trie.

Python's ``re`` tries the alternatives of ``(?:open|opened|go to|click|…)`` one by
one at every place the text could match, so a rule listing a hundred verbs costs a
hundred tests per word. Grouped by first character (``o(?:pen|pened)|go to|click``),
only the alternatives that start with the character at hand are tried.

The result matches exactly what the written pattern matches, with the same spans:
two alternatives that start with different characters never both match at one
place, so only their order within a group matters, and that is kept. Patterns that
ignore case are left as written (``A`` and ``a`` would fall in different groups),
and so is any pattern the private parser cannot take.
"""
from __future__ import annotations

import re

try:  # the parser and compiler behind ``re.compile`` (private: without them, plain re.compile)
    import _sre
    from re import _compiler as _C, _constants as K, _parser as P
except ImportError:  # pragma: no cover
    _sre = _C = K = P = None  # type: ignore[assignment]


def compile_trie(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """``re.compile(pattern, flags)``, with alternations grouped by first character."""
    plain = re.compile(pattern, flags)
    if P is None or plain.flags & re.IGNORECASE:
        return plain
    try:
        parsed = P.parse(pattern, flags)
        if not _regroup(parsed):
            return plain
        # what ``re._compiler.compile`` does, keeping the pattern's own text
        state = parsed.state
        names: list[str | None] = [None] * state.groups
        for name, index in state.groupdict.items():
            names[index] = name
        return _sre.compile(pattern, flags | state.flags, _C._code(parsed, flags), state.groups - 1,
                            state.groupdict, tuple(names))
    except Exception:  # noqa: BLE001  # a parser we do not own: fall back to the pattern as written
        return plain


def _regroup(sub) -> bool:
    """Regroup every alternation in ``sub`` in place; True if any changed."""
    changed = False
    for i, (op, av) in enumerate(sub.data):
        if op is K.BRANCH:
            alternatives = av[1]
            for alternative in alternatives:
                changed |= _regroup(alternative)
            grouped = _by_first_character(alternatives, sub.state)
            if grouped is not alternatives:
                sub.data[i] = (K.BRANCH, (av[0], grouped))
                changed = True
        elif op is K.SUBPATTERN:
            _group, add_flags, _del_flags, inner = av
            if not add_flags & re.IGNORECASE:
                changed |= _regroup(inner)
        elif op in (K.MAX_REPEAT, K.MIN_REPEAT, K.POSSESSIVE_REPEAT):
            changed |= _regroup(av[2])
        elif op in (K.ASSERT, K.ASSERT_NOT):
            changed |= _regroup(av[1])
        elif op is K.ATOMIC_GROUP:
            changed |= _regroup(av)
    return changed


def _by_first_character(alternatives: list, state) -> list:
    """The alternatives grouped by their first literal character, or the same list when
    some alternative does not start with one or no two share it."""
    if len(alternatives) < 2 or any(not a.data or a.data[0][0] is not K.LITERAL for a in alternatives):
        return alternatives
    groups: dict[int, list] = {}
    for alternative in alternatives:
        groups.setdefault(alternative.data[0][1], []).append(alternative)
    if len(groups) == len(alternatives):
        return alternatives
    out = []
    for char, members in groups.items():
        if len(members) == 1:
            out.append(members[0])
            continue
        rests = [P.SubPattern(state, list(m.data[1:])) for m in members]
        out.append(P.SubPattern(state, [(K.LITERAL, char), (K.BRANCH, (None, _by_first_character(rests, state)))]))
    return out
