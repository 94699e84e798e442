"""Second stage: match the rules against a request.

The rules are compiled into spaCy ``Matcher`` patterns, ``PhraseMatcher`` lookups and
regular expressions (only for what tokens cannot say: URLs, versions, keys). The
matcher is a spaCy pipeline component (``intake_rule_matcher``) on
``spacy.blank("en")`` with a case-insensitive lookup lemmatizer
(``intake_lemmatizer``, tables from ``spacy-lookups-data``), so "installing",
"Installed" and "install" match one lemma pattern. Each hit keeps its rule id, span,
matched words and segment.

What makes it cheap, with the Matcher's own results (tests compare against a plain
Matcher): a token pattern that only spells out words (LOWER, LEMMA as the forms the
lookup table maps to that lemma, punctuation; ``?`` allowed) becomes a phrase lookup;
every other one runs only when all the words it requires occur, on windows around
them, in Python when its tokens are word sets, flags and wildcards (a Matcher call
costs ~12 µs however short the window) and by its own Matcher otherwise; a regex
runs only on texts holding the literal strings it cannot match without, all found
in one pass (``regex_literals``); a rule's exclusions are matched only where it fired;
and each component takes a batch at a time in ``pipe``.

Regexes a support lead writes cannot hang the pipeline: every ``regex:`` pattern and
every ``REGEX`` token predicate runs on the ``regex`` module with a time limit per
text (:data:`REGEX_TIME_LIMIT`). A regex that runs out of time is skipped for that
request, which is then sent to review naming the rule (``doc._.intake_timed_out``).
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Container, Iterable, Iterator

import numpy as np
import regex
import spacy
from spacy.attrs import IDX, IS_ALPHA, IS_DIGIT, IS_PUNCT, IS_SPACE, LEMMA, LOWER, SPACY
from spacy.language import Language
import spacy_lookups_data
from spacy.lookups import load_lookups
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc, Token
from spacy.util import load_language_data, minibatch

from .collector import collector_paused
from .errors import Errors, RulesError
from .normalise import NormalisedRequest, Segment
from .regex_literals import Gate, GateScanner, gate_strings, passes, regex_gate
from .rules import Rule, RuleSet, load_rules

if not Doc.has_extension("intake_segments"):
    Doc.set_extension("intake_segments", default=None)
if not Doc.has_extension("intake_hits"):
    Doc.set_extension("intake_hits", default=None)
if not Doc.has_extension("intake_text"):  # the text, when known, so it need not be rebuilt from tokens
    Doc.set_extension("intake_text", default=None)
if not Doc.has_extension("intake_timed_out"):  # ids of rules whose regex ran out of time
    Doc.set_extension("intake_timed_out", default=None)

#: Seconds one rule regex may spend on one request (``regex:`` patterns: per run over the
#: text; a ``REGEX`` token predicate: over all the tokens of the request it tests). The
#: ``regex`` module counts the process's CPU time, so waiting for a core does not count;
#: ordinary rule regexes take well under a millisecond.
REGEX_TIME_LIMIT = 0.05


class _RegexBudget(threading.local):
    """Time left for each token predicate in the request being matched, per thread, and
    the predicates that ran out of it."""

    def __init__(self) -> None:
        self.left: dict[str, float] = {}
        self.timed_out: set[str] = set()

    def reset(self) -> None:
        self.left.clear()
        self.timed_out.clear()


_BUDGET = _RegexBudget()


def _token_predicate(attr: str, pattern: str) -> str:
    """The name of a token extension that tests ``pattern`` on the token's ``attr`` within
    the request's time budget: what a ``REGEX`` predicate becomes for the Matcher."""
    name = "intake_rx_" + hashlib.sha1(f"{attr}\0{pattern}".encode()).hexdigest()[:16]
    if Token.has_extension(name):
        return name
    compiled = regex.compile(pattern)
    read = (lambda t: t.text) if attr in ("TEXT", "ORTH") else (lambda t, a=attr.lower() + "_": getattr(t, a))

    def test(token: Token) -> bool:
        left = _BUDGET.left.get(name, REGEX_TIME_LIMIT)
        if left <= 0:
            return False
        start = time.perf_counter()
        try:
            return compiled.search(read(token), timeout=left) is not None
        except TimeoutError:
            _BUDGET.timed_out.add(name)
            left = 0.0
            return False
        finally:
            _BUDGET.left[name] = left - (time.perf_counter() - start)

    Token.set_extension(name, getter=test)
    return name


def _bounded_token_pattern(pattern: list[dict]) -> tuple[list[dict], frozenset[str]]:
    """``pattern`` with each ``REGEX`` predicate replaced by a time-bounded token extension,
    and the names of those extensions."""
    out, names = [], set()
    for token in pattern:
        token = dict(token)
        for attr, value in list(token.items()):
            if attr in ("OP", "_") or not (isinstance(value, dict) and "REGEX" in value):
                continue
            rest = {k: v for k, v in value.items() if k != "REGEX"}
            name = _token_predicate(attr.upper(), value["REGEX"])
            names.add(name)
            token["_"] = {**token.get("_", {}), name: True}
            if rest:
                token[attr] = rest
            else:
                del token[attr]
        out.append(token)
    return out, frozenset(names)


def _user_data_layout_holds() -> bool:
    """Whether ``doc._.<name>`` keeps its value in ``doc.user_data`` under spaCy's key
    ``("._.", name, None, None)``, checked once on a throwaway doc."""
    from spacy.vocab import Vocab

    probe = Doc(Vocab(), words=["probe"])
    probe._.intake_text = "probe"
    return probe.user_data.get(("._.", "intake_text", None, None)) == "probe"


if _user_data_layout_holds():
    # read and written in doc.user_data directly: each ``doc._`` access builds an
    # Underscore object (~1 µs), and a request takes six of them
    def get_ext(doc: Doc, name: str) -> Any:
        """``doc._.<name>`` (None when unset: every intake extension defaults to None)."""
        return doc.user_data.get(("._.", name, None, None))

    def set_ext(doc: Doc, name: str, value: Any) -> None:
        """``doc._.<name> = value``."""
        doc.user_data[("._.", name, None, None)] = value
else:  # pragma: no cover  # another spaCy layout: the public way
    def get_ext(doc: Doc, name: str) -> Any:
        """``doc._.<name>``."""
        return getattr(doc._, name)

    def set_ext(doc: Doc, name: str, value: Any) -> None:
        """``doc._.<name> = value``."""
        setattr(doc._, name, value)


@dataclass(frozen=True)
class Hit:
    """One rule firing on one span of the request."""

    rule_id: str
    kind: str
    label: str
    start: int  # character offsets in the normalised text
    end: int
    text: str
    segment: str
    weight: float


class LowercaseLemmatizer:
    """Lookup lemmatizer that ignores case (spaCy's own lookup mode is case-sensitive)."""

    def __init__(self, nlp: Language, name: str = "intake_lemmatizer") -> None:
        self.name = name
        table = load_lookups(lang="en", tables=["lemma_lookup"]).get_table("lemma_lookup")
        self._table = table
        self._cache: dict[int, int] = {}
        self._strings = nlp.vocab.strings
        self._forms: dict[str, frozenset[str]] | None = None  # lemma -> its forms, read on first use

    def __call__(self, doc: Doc) -> Doc:
        if not len(doc):
            return doc
        cache = self._cache
        lemmas = [cache.get(h) or self._lemma(h) for h in doc.to_array(LOWER).tolist()]
        doc.from_array([LEMMA], np.array(lemmas, dtype=np.uint64).reshape(-1, 1))
        return doc

    def pipe(self, docs: Iterable[Doc], batch_size: int = 256) -> Iterator[Doc]:
        yield from _in_batches(self, docs, batch_size)

    def forms_of(self, lemma: str) -> frozenset[str]:
        """Every lower-case form whose lemma is ``lemma`` (``install`` -> install, installs,
        installed, installing …), so a LEMMA pattern can be matched on LOWER."""
        if self._forms is None:
            forms: dict[str, set[str]] = {}
            for form, lem in load_language_data(spacy_lookups_data.en["lemma_lookup"]).items():
                if form == form.lower():
                    forms.setdefault(lem, set()).add(form)
            self._forms = {k: frozenset(v) for k, v in forms.items()}
        own = {lemma} if self._table.get(lemma, lemma) == lemma else set()
        return self._forms.get(lemma, frozenset()) | own

    def _lemma(self, lower: int) -> int:
        """Hash of the lemma of the lower-case form ``lower``, looked up once and kept."""
        lemma = self._strings.add(self._table.get(lower, self._strings[lower]))
        self._cache[lower] = lemma
        return lemma


def _in_batches(component: Callable[[Doc], Doc], docs: Iterable[Doc], batch_size: int) -> Iterator[Doc]:
    """A component's ``pipe``: each batch through the component before the next stage sees
    any of it. spaCy's default hands docs on one at a time, and tokenizer, lemmatizer and
    matcher taking turns per doc evict each other's data from the CPU caches (measured:
    the tokenizer 40% and the matcher ~15% slower interleaved than each run over a batch)."""
    for batch in minibatch(docs, size=batch_size):
        with collector_paused():
            for doc in batch:
                component(doc)
        yield from batch


@Language.factory("intake_lemmatizer")
def make_lemmatizer(nlp: Language, name: str) -> LowercaseLemmatizer:
    return LowercaseLemmatizer(nlp, name)


#: What the rule matcher (``_TokenArrays``) and the model's features read of each
#: token, in one ``to_array`` call per doc (each call costs ~3 µs and more).
TOKEN_ATTRS = [LOWER, LEMMA, IDX, SPACY, IS_PUNCT, IS_ALPHA, IS_DIGIT, IS_SPACE]
#: ``doc.user_data`` key under which the rule matcher leaves that array for later stages
TOKEN_ARRAY_KEY = "intake_token_array"


class _TokenArrays:
    """Per token of a doc: lower-case and lemma hashes, character offsets, flags, and
    where each word of interest (an anchor of some token pattern) occurs."""

    __slots__ = ("array", "lowers", "lemmas", "positions", "_idx", "_spaces", "_flags", "_length", "_columns")

    def __init__(self, doc: Doc, text: str, wanted: Container[int] = ()) -> None:
        arr = doc.to_array(TOKEN_ATTRS)
        self.array = arr
        self.lowers, self.lemmas = arr[:, :2].T.tolist()
        # offsets and flags stay arrays: a doc needs a few offsets, and flags only for some patterns
        self._idx, self._spaces, self._flags = arr[:, 2], arr[:, 3], arr[:, 4:7]
        self._columns: list[list[int]] | None = None
        self._length = len(text)
        positions: dict[int, list[int]] = {}
        for i, (lower, lemma) in enumerate(zip(self.lowers, self.lemmas)):
            if lower in wanted:
                positions.setdefault(lower, []).append(i)
            if lemma != lower and lemma in wanted:
                positions.setdefault(lemma, []).append(i)
        self.positions = positions

    def start(self, i: int) -> int:
        """Where token ``i`` starts."""
        return int(self._idx[i])

    def end(self, i: int) -> int:
        """Where token ``i`` ends: where the next begins, less the one space it may carry."""
        nxt = int(self._idx[i + 1]) if i + 1 < len(self._idx) else self._length
        return nxt - int(self._spaces[i])

    def columns(self) -> list[list[int]]:
        """Per token, in the order of ``_COLUMNS``: lower-case form, lemma, and flags."""
        if self._columns is None:
            self._columns = [self.lowers, self.lemmas, *self._flags.T.tolist()]
        return self._columns


#: What ``_TokenSequence`` tests a token on, as indexes into ``_TokenArrays.columns()``.
_COLUMNS = {"LOWER": 0, "LEMMA": 1, "IS_PUNCT": 2, "IS_ALPHA": 3, "IS_DIGIT": 4}
_UNBOUNDED = 1 << 30


class _TokenSequence:
    """A token pattern run in Python on a few tokens, for what spaCy's Matcher costs per
    call (~12 µs, most of it set-up): each token one test (its lower-case form or lemma
    in a set, a flag, or anything) repeated between a least and a most number of times.
    Finds every (start, end) the Matcher finds, on the same window (tests compare them)."""

    __slots__ = ("steps",)

    def __init__(self, steps: tuple[tuple[int, frozenset[int] | bool | None, int, int], ...]) -> None:
        self.steps = steps  # (column, hashes / flag value / None for any, least, most)

    @classmethod
    def of(cls, pattern: list[dict], strings) -> "_TokenSequence | None":
        """The sequence for ``pattern``, or None when it uses what this does not test."""
        steps = []
        for token in pattern:
            counts = _op_counts(token.get("OP"))
            attrs = [k for k in token if k != "OP"]
            if counts is None or len(attrs) > 1:
                return None
            if not attrs:
                steps.append((0, None, *counts))
                continue
            key, value = attrs[0].upper(), token[attrs[0]]
            if key in ("ORTH", "TEXT") and isinstance(value, str) and value.lower() == value.upper():
                key = "LOWER"  # punctuation: its text is its lower-case form
            if key not in _COLUMNS:
                return None
            if key.startswith("IS_"):
                if not isinstance(value, bool):
                    return None
                steps.append((_COLUMNS[key], value, *counts))
                continue
            if isinstance(value, str):
                values = [value]
            elif isinstance(value, dict) and set(value) == {"IN"}:
                values = [str(v) for v in value["IN"]]
            else:
                return None
            steps.append((_COLUMNS[key], frozenset(strings.add(v) for v in values), *counts))
        merged: list[tuple[int, frozenset[int] | bool | None, int, int]] = []
        for step in steps:  # "any token" twice in a row, l1..m1 then l2..m2 times: l1+l2..m1+m2 times
            if merged and step[1] is None and merged[-1][1] is None:
                _, _, least, most = merged.pop()
                step = (0, None, least + step[2], min(most + step[3], _UNBOUNDED))
            merged.append(step)
        return cls(tuple(merged))

    def spans(self, columns: list[list[int]], a: int, b: int,
              starts: Iterable[int] | None = None) -> list[tuple[int, int]]:
        """Every (start, end) with a <= start < end <= b where the tokens match in order;
        ``starts``: the only places a match can start, if known (in order)."""
        out = []
        col0, values0, least0, _ = self.steps[0]
        first = columns[col0]
        for start in range(a, b) if starts is None else starts:
            if not a <= start < b:
                continue
            if least0 and values0 is not None and not (
                    first[start] in values0 if isinstance(values0, frozenset) else first[start] == values0):
                continue
            current = {start}
            for col, values, least, most in self.steps:
                column = columns[col]
                after = set()
                for i in current:
                    if values is None:  # any token: every count the window leaves room for
                        after.update(range(i + least, min(i + most, b) + 1))
                        continue
                    if not least:
                        after.add(i)
                    taken = 0
                    while taken < most and i < b and (
                            column[i] in values if isinstance(values, frozenset) else column[i] == values):
                        i += 1
                        taken += 1
                        if taken >= least:
                            after.add(i)
                current = after
                if not current:
                    break
            out.extend((start, end) for end in current if end > start)
        return out


def _op_counts(op: str | None) -> tuple[int, int] | None:
    """Least and most tokens a pattern token with operator ``op`` matches (None: not supported)."""
    if op in (None, "1"):
        return 1, 1
    fixed = {"?": (0, 1), "*": (0, _UNBOUNDED), "+": (1, _UNBOUNDED)}
    if op in fixed:
        return fixed[op]
    m = re.fullmatch(r"\{(\d*)(,?)(\d*)\}", str(op))
    if not m or not (m.group(1) or m.group(3)):
        return None
    least = int(m.group(1) or 0)
    most = int(m.group(3)) if m.group(3) else (least if not m.group(2) else _UNBOUNDED)
    return least, most


def _segment_at(segments: list[Segment], start: int) -> str:
    for seg in segments:
        if seg.start <= start < seg.end:
            return seg.kind
    return "prose"


_ANCHOR_ATTRS = {"LOWER": "lower", "LEMMA": "lemma", "ORTH": "lower", "TEXT": "lower", "NORM": "lower"}


def _required_text_value(token: dict) -> Any:
    """The value of a required token's only text attribute (LOWER, LEMMA …), else None.

    Only required tokens (no ``OP``, or ``+``) with one text attribute count.
    """
    if token.get("OP") not in (None, "+", "1"):
        return None
    attrs = [k for k in token if k != "OP"]
    if len(attrs) != 1 or attrs[0].upper() not in _ANCHOR_ATTRS:
        return None
    return token[attrs[0]]


def _anchor_values(token: dict) -> frozenset[str] | None:
    """Values one of which a token must have (lower-cased), or None if it has no such constraint."""
    value = _required_text_value(token)
    if isinstance(value, str):
        return frozenset({value.lower()})
    if isinstance(value, dict) and set(value) == {"IN"}:
        return frozenset(str(v).lower() for v in value["IN"])
    return None


def _max_counts(pattern: list[dict]) -> list[int | None]:
    """Most tokens each pattern token can match (None: unbounded, ``*``/``+``/``{n,}``)."""
    counts: list[int | None] = []
    for token in pattern:
        op = str(token.get("OP", "1"))
        if op in ("*", "+"):
            counts.append(None)
            continue
        m = re.fullmatch(r"\{(\d*)(?:,(\d*))?\}", op)
        if m:
            upper = m.group(2) if "," in op else m.group(1)
            counts.append(int(upper) if upper else None)
        else:
            counts.append(1)
    return counts


def _total(counts: list[int | None]) -> int | None:
    return None if any(c is None for c in counts) else sum(counts)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _TokenPattern:
    """A token pattern with its own Matcher and what it cannot match without.

    ``need``: bits of the anchor sets (the words a required token must be one of)
    that must all occur in the document. ``anchor`` is the rarest anchor set, the
    one indexed; a match containing an occurrence at position p lies within
    [p - before, p + after] (None: unbounded). ``first``/``last``: the words of the
    first/last token when it is required, so a match starts/ends at one of their
    occurrences. ``gate``: sets of strings the lower-cased text must contain one
    of each (from REGEX token predicates).
    """

    key: str
    matcher: Matcher
    sequence: _TokenSequence | None  # the same pattern run in Python, when it can be
    need: int
    anchor: frozenset[int] | None
    before: int | None
    after: int | None
    first: frozenset[int] | None
    last: frozenset[int] | None
    gate: Gate


def _regex_gate(token: dict) -> Gate:
    """For a required token with one REGEX predicate: the gate the text must pass."""
    value = _required_text_value(token)
    if not (isinstance(value, dict) and set(value) == {"REGEX"}):
        return ()
    return regex_gate(value["REGEX"])


#: A token pattern made only of single-attribute LOWER/LEMMA tokens (with ``IN``
#: and ``?``) and at most this many spelled-out variants goes to a PhraseMatcher.
MAX_PHRASE_VARIANTS = 4096


def _phrase_variants(pattern: list[dict], forms_of: Callable[[str], frozenset[str]] | None = None,
                     ) -> tuple[str, list[list[str]]] | None:
    """The attribute and every word sequence a simple token pattern matches, or None.

    With ``forms_of`` (the lower-case forms whose lemma is a given word), LEMMA tokens
    become the LOWER forms they stand for, so they mix with LOWER tokens; ORTH and
    TEXT values without case (punctuation) are the same as LOWER ones.
    """
    attr = None
    variants: list[list[str]] = [[]]
    for token in pattern:
        op = token.get("OP")
        keys = [k for k in token if k != "OP"]
        if op not in (None, "?") or len(keys) != 1:
            return None
        key = keys[0].upper()
        value = token[keys[0]]
        if isinstance(value, dict):
            if set(value) != {"IN"}:
                return None
            values = [str(v) for v in value["IN"]]
        else:
            values = [str(value)]
        if key in ("ORTH", "TEXT") and all(v.lower() == v.upper() for v in values):
            key = "LOWER"
        if key == "LEMMA" and forms_of is not None:
            key, values = "LOWER", sorted({f for v in values for f in forms_of(v.lower())})
            if not values:
                return None
        if key not in ("LOWER", "LEMMA") or attr not in (None, key):
            return None
        attr = key
        words = [v.lower() for v in values]
        if len(variants) * (len(words) + (op == "?")) > MAX_PHRASE_VARIANTS:
            return None
        variants = [v + [w] for v in variants for w in words] + (variants if op == "?" else [])
    variants = [v for v in variants if v]
    return (attr, variants) if attr and variants else None


def _lowercase_literals(pattern: str) -> str:
    """Lower-case a regex's literal letters, leaving escapes (\\S, \\D, \\B …) alone,
    so it can run without IGNORECASE on lower-cased text (faster)."""
    out, escaped = [], False
    for ch in pattern:
        out.append(ch if escaped else ch.lower())
        escaped = ch == "\\" and not escaped
    return "".join(out)


class _PatternSet:
    """One polarity of the rules' patterns (the patterns, or the exclusions), compiled.

    Token patterns each get an index of the words they cannot match without
    ("anchors"); per document only the patterns whose anchors all occur in it are
    run, on windows around those words, as a ``_TokenSequence`` or with their own
    ``Matcher``. spaCy's Matcher tries every pattern at every token and evaluates
    ``IN`` sets in Python, so this keeps matching cost close to the tokenizer's
    however many rules there are, with the Matcher's own semantics. Simple token
    patterns become phrase lookups; a regex is skipped on texts that lack the
    literal strings it cannot match without.
    """

    def __init__(self, nlp: Language) -> None:
        self.phrases = PhraseMatcher(nlp.vocab, attr="LEMMA")
        self.lower_phrases = PhraseMatcher(nlp.vocab, attr="LOWER")
        # (key, regex for lower-cased text or None when case-sensitive, regex for the text,
        #  gate: sets of substrings the lower-cased text must contain one of each for the
        #  regex to run: the rule's own ``requires`` and what the regex cannot match without)
        self.regexes: list[tuple[str, regex.Pattern[str] | None, regex.Pattern[str], Gate]] = []
        self.token_matchers: list[_TokenPattern] = []
        self._unindexed: list[int] = []  # token patterns without anchors
        self._index: dict[int, list[int]] = {}  # hash of the rarest anchor's words -> token patterns
        self._anchor_bits: dict[int, int] = {}  # word hash -> bits of the anchor sets it is in
        self._anchor_sets: dict[frozenset[int], int] = {}  # anchor set -> its bit
        self._scanner: GateScanner | None = None  # built on first use, when all patterns are in
        # which patterns belong to a key, so a few keys' patterns (exclusions) run without the rest
        self._token_keys: dict[str, list[int]] = {}
        self._regex_keys: dict[str, list[int]] = {}
        self._phrase_keys: set[str] = set()
        # token pattern -> the bounded REGEX predicates its Matcher tests
        self._predicates: dict[int, frozenset[str]] = {}
        # regexes without a gate, and by each string of their gate's first set (built on first use)
        self._regex_plan: tuple[list[int], dict[str, list[int]]] | None = None

    def add(self, nlp: Language, lemmatize, rule: Rule, key: str, index: int, pattern,
            phrases_into: "_PatternSet | None" = None) -> None:
        """Compile ``pattern`` under ``key``; what becomes a phrase lookup goes to the
        phrase matchers of ``phrases_into`` (default: this set's own)."""
        lookups = self if phrases_into is None else phrases_into
        if pattern.kind == "tokens":
            matcher = Matcher(nlp.vocab, validate=True)
            try:
                bounded, predicates = _bounded_token_pattern(pattern.value)
                matcher.add(key, [bounded])
            except (ValueError, KeyError, TypeError, regex.error) as exc:
                detail = " ".join(str(exc).split())[:300]
                raise RulesError(Errors.E008.format(file=rule.file, line=rule.line, rule_id=rule.id,
                                                    index=index, detail=detail)) from None
            if predicates:
                self._predicates[len(self.token_matchers)] = predicates
            forms_of = lemmatize.forms_of if lemmatize is not None else None
            variants = _phrase_variants(pattern.value, forms_of)
            if variants is not None:  # same matches, found by hashing instead of by the Matcher
                attr, words = variants
                target = lookups.phrases if attr == "LEMMA" else lookups.lower_phrases
                target.add(key, [Doc(nlp.vocab, words=w, lemmas=w if attr == "LEMMA" else None) for w in words])
                lookups._phrase_keys.add(key)
                return
            strings = nlp.vocab.strings
            stop = nlp.Defaults.stop_words
            values = [_anchor_values(t) for t in pattern.value]
            found = [(k, v) for k, v in enumerate(values) if v]
            need = 0
            for _, words in found:
                hashes = frozenset(strings.add(w) for w in words)
                bit = self._anchor_sets.setdefault(hashes, 1 << len(self._anchor_sets))
                need |= bit
                for h in hashes:
                    self._anchor_bits[h] = self._anchor_bits.get(h, 0) | bit
            gate = tuple(strings for token in pattern.value for strings in _regex_gate(token))
            sequence = _TokenSequence.of(pattern.value, strings)
            counts = _max_counts(pattern.value)
            first = frozenset(strings.add(w) for w in values[0]) if values[0] else None
            last = frozenset(strings.add(w) for w in values[-1]) if values[-1] else None
            pos = len(self.token_matchers)
            self._token_keys.setdefault(key, []).append(pos)
            if found:
                # index the anchor least likely to occur: fewest stop words, then fewest values
                k, words = min(found, key=lambda kv: (sum(w in stop for w in kv[1]), len(kv[1])))
                after = _total(counts[k:])
                anchor = frozenset(strings.add(w) for w in words)
                self.token_matchers.append(_TokenPattern(
                    key, matcher, sequence, need, anchor, _total(counts[:k]), None if after is None else after - 1,
                    first, last, gate))
                for h in anchor:
                    self._index.setdefault(h, []).append(pos)
            else:
                self.token_matchers.append(_TokenPattern(key, matcher, sequence, 0, None, None, None, None, None, gate))
                self._unindexed.append(pos)
        elif pattern.kind == "phrase":
            doc = nlp.make_doc(pattern.value)
            if lemmatize is not None:
                doc = lemmatize(doc)
            lookups.phrases.add(key, [doc])
            lookups._phrase_keys.add(key)
        else:
            own = (frozenset(s.lower() for s in pattern.requires),) if pattern.requires else ()
            gate = own + regex_gate(pattern.value)
            self._regex_keys.setdefault(key, []).append(len(self.regexes))
            self._regex_plan = None
            if pattern.case_sensitive:
                self.regexes.append((key, None, regex.compile(pattern.value), gate))
            else:
                self.regexes.append((key, regex.compile(_lowercase_literals(pattern.value)),
                                     regex.compile(pattern.value, regex.IGNORECASE), gate))

    def gate_strings(self) -> set[str]:
        """Every string a gate of this set tests for."""
        return gate_strings([tp.gate for tp in self.token_matchers] + [r[3] for r in self.regexes])

    def scanner(self) -> GateScanner:
        """A scanner for this set's gates alone (the rule matcher shares one between its sets)."""
        if self._scanner is None:
            self._scanner = GateScanner(self.gate_strings())
        return self._scanner

    def _regexes_to_run(self, in_text: set[str]) -> list[int]:
        """Indexes, in order, of the regexes whose gate's first set the text holds a string
        of, and of those without a gate (the rest of a gate is tested by the caller)."""
        if self._regex_plan is None:
            ungated, by_string = [], {}
            for i, (_key, _low, _text, gate) in enumerate(self.regexes):
                if not gate:
                    ungated.append(i)
                for string in gate[0] if gate else ():
                    by_string.setdefault(string, []).append(i)
            self._regex_plan = ungated, by_string
        ungated, by_string = self._regex_plan
        run = set(ungated)
        for string in in_text:
            if string in by_string:
                run.update(by_string[string])
        return sorted(run)

    def token_pattern_hits(self, doc: Doc, lowered: str, tokens: _TokenArrays | None = None,
                           only: frozenset[str] | None = None, in_text: set[str] | None = None,
                           ) -> Iterator[tuple[str, int, int]]:
        """Run each token pattern whose anchors all occur in ``doc`` (and whose key is in
        ``only``, if given), only on windows around the occurrences of its rarest anchor
        (a match must contain one). ``in_text``: the gate strings the text holds (scanned
        here when not given)."""
        if in_text is None:
            in_text = self.scanner().scan(lowered)
        bits = self._anchor_bits
        tokens = tokens or _TokenArrays(doc, doc.text, bits)
        positions = tokens.positions  # may hold other sets' words too
        present = 0
        if only is None:
            candidates = set(self._unindexed)
            index = self._index
            for h in positions:
                if h in bits:
                    present |= bits[h]
                    if h in index:
                        candidates.update(index[h])
        else:  # just these keys' patterns (those whose anchors are missing fail ``need``)
            for h in positions:
                if h in bits:
                    present |= bits[h]
            candidates = {i for key in only for i in self._token_keys.get(key, ())}
        n = len(doc)
        found = positions.keys()  # each word's positions are in ascending order

        for i in sorted(candidates):
            tp = self.token_matchers[i]
            if tp.need & ~present or (tp.gate and not passes(tp.gate, in_text)):
                continue
            # a match starts at an occurrence of a required first token and ends at one
            # of a required last token: that bounds what an unbounded pattern can span
            first_at = sorted(p for h in found & tp.first for p in positions[h]) if tp.first is not None else None
            lo = first_at[0] if first_at else 0
            hi = max(positions[h][-1] for h in found & tp.last) + 1 if tp.last is not None else n
            if tp.anchor is None:
                windows = [(lo, hi)] if lo < hi else []
            else:
                windows = []
                for p in sorted(p for h in found & tp.anchor for p in positions[h]):
                    a = lo if tp.before is None else max(lo, p - tp.before)
                    b = hi if tp.after is None else min(hi, p + tp.after + 1)
                    if a >= b:
                        continue
                    if windows and a <= windows[-1][1]:
                        windows[-1] = (windows[-1][0], max(b, windows[-1][1]))
                    else:
                        windows.append((a, b))
            if tp.sequence is not None:
                columns = tokens.columns()
                for a, b in windows:
                    for start, end in tp.sequence.spans(columns, a, b, first_at):
                        yield tp.key, tokens.start(start), tokens.end(end - 1)
                continue
            for a, b in windows:
                for _match_id, start, end in tp.matcher(doc[a:b]):
                    yield tp.key, tokens.start(a + start), tokens.end(a + end - 1)
            if i in self._predicates and self._predicates[i] & _BUDGET.timed_out:
                _BUDGET.timed_out.add(tp.key)

    def matches(self, doc: Doc, text: str, lowered: str, tokens: _TokenArrays | None,
                only: frozenset[str] | None = None, in_text: set[str] | None = None,
                ) -> list[tuple[str, int, int]]:
        """Every (key, start char, end char) match in the doc; only keys in ``only`` if given."""
        if in_text is None:
            in_text = self.scanner().scan(lowered)
        raw = self.token_and_phrase_matches(doc, lowered, tokens, only, in_text)
        hits, timed_out = self.regex_matches_many([(text, lowered, in_text)], only)
        raw.extend(hits[0])
        _BUDGET.timed_out.update(timed_out[0])
        return raw

    def token_and_phrase_matches(self, doc: Doc, lowered: str, tokens: _TokenArrays | None,
                                 only: frozenset[str] | None, in_text: set[str]) -> list[tuple[str, int, int]]:
        """The token patterns' and phrases' (key, start char, end char) matches."""
        raw: list[tuple[str, int, int]] = []
        if tokens is None:
            return raw
        raw.extend(self.token_pattern_hits(doc, lowered, tokens, only, in_text))
        start_of, end_of, strings = tokens.start, tokens.end, doc.vocab.strings
        wanted = only is None or not self._phrase_keys.isdisjoint(only)
        for phrases in (self.phrases, self.lower_phrases) if wanted else ():
            if len(phrases):
                raw.extend((strings[match_id], start_of(start), end_of(end - 1))
                           for match_id, start, end in phrases(doc))
        if only is not None:
            raw = [m for m in raw if m[0] in only]
        return raw

    def regex_matches_many(self, texts: list[tuple[str, str, set[str]]], only: frozenset[str] | None = None,
                           ) -> tuple[list[list[tuple[str, int, int]]], list[set[str]]]:
        """The regexes' (key, start char, end char) matches in each (text, lower-cased text,
        gate strings it holds), regex by regex over all the texts: each regex's program
        stays in the CPU's caches for the whole batch. Per text, in the order of the regexes;
        and per text the keys of the regexes that ran out of time there (their matches dropped)."""
        regexes = self.regexes
        if only is not None:
            fixed = sorted(i for key in only for i in self._regex_keys.get(key, ()))
        todo: dict[int, list[int]] = {}  # regex -> texts it may match
        for t, (_text, _lowered, in_text) in enumerate(texts):
            for i in fixed if only is not None else self._regexes_to_run(in_text):
                todo.setdefault(i, []).append(t)
        out: list[list[tuple[str, int, int]]] = [[] for _ in texts]
        timed_out: list[set[str]] = [set() for _ in texts]
        for i in sorted(todo):
            key, on_lower, on_text, gate = regexes[i]
            for t in todo[i]:
                text, lowered, in_text = texts[t]
                if gate and not passes(gate, in_text):
                    continue
                # a few characters change length when lower-cased: then the original text
                if on_lower is not None and len(lowered) == len(text):
                    found = on_lower.finditer(lowered, timeout=REGEX_TIME_LIMIT)
                else:
                    found = on_text.finditer(text, timeout=REGEX_TIME_LIMIT)
                try:
                    out[t].extend([(key, m.start(), m.end()) for m in found if m.end() > m.start()])
                except TimeoutError:
                    timed_out[t].add(key)
        return out, timed_out


class RuleMatcher:
    """spaCy component: finds every rule hit and stores them in ``doc._.intake_hits``.

    A rule's exclusions are matched only in documents where the rule fired.
    """

    def __init__(self, nlp: Language, ruleset: RuleSet, name: str = "intake_rule_matcher") -> None:
        self.name = name
        self.ruleset = ruleset
        self.rules = {r.id: r for r in ruleset.rules}
        self.positive = _PatternSet(nlp)
        self.exclusions = _PatternSet(nlp)
        self._read = {r.id: frozenset(r.read) for r in ruleset.rules}
        self._exclusion_key = {r.id: r.id + "!x" for r in ruleset.rules if r.exclude}
        lemmatize = nlp.get_pipe("intake_lemmatizer") if "intake_lemmatizer" in nlp.pipe_names else None
        for rule in ruleset.rules:
            for index, pattern in enumerate(rule.patterns, 1):
                self.positive.add(nlp, lemmatize, rule, rule.id, index, pattern)
            for index, pattern in enumerate(rule.exclude, 1):
                # exclusion phrases share the positive phrase matchers: one lookup finds
                # both (its cost hardly grows with the phrases), applied where the rule fired
                self.exclusions.add(nlp, lemmatize, rule, rule.id + "!x", index, pattern, phrases_into=self.positive)
        self._exclusion_keys = frozenset(self._exclusion_key.values())
        # every word either set indexes, so a doc's token positions are found once for both
        self._anchor_words = frozenset(self.positive._anchor_bits) | frozenset(self.exclusions._anchor_bits)
        # and every string their gates test for, so a doc is scanned once for both
        self._scanner = GateScanner(self.positive.gate_strings() | self.exclusions.gate_strings())

    def pipe(self, docs: Iterable[Doc], batch_size: int = 256) -> Iterator[Doc]:
        """Match a batch at a time (the regexes run over the whole batch, one after another)."""
        for batch in minibatch(docs, size=batch_size):
            self._match(batch)
            yield from batch

    def __call__(self, doc: Doc) -> Doc:
        self._match([doc])
        return doc

    def _match(self, docs: list[Doc]) -> None:
        """Store each doc's hits in ``doc._.intake_hits``."""
        with collector_paused():
            self._match_batch(docs)

    def _match_batch(self, docs: list[Doc]) -> None:
        prepared = []
        for doc in docs:
            text = get_ext(doc, "intake_text")
            if text is None:
                text = doc.text
            lowered = text.lower()
            # the gate strings of both pattern sets the text holds, found in one scan
            prepared.append((text, lowered, self._scanner.scan(lowered)))
        regex_hits, regex_timed_out = self.positive.regex_matches_many(prepared)
        for doc, (text, lowered, in_text), from_regexes, timed_out in zip(docs, prepared, regex_hits, regex_timed_out):
            _BUDGET.reset()
            set_ext(doc, "intake_hits", self._hits(doc, text, lowered, in_text, from_regexes))
            timed_out |= {k for k in _BUDGET.timed_out if not k.startswith("intake_rx_")}
            set_ext(doc, "intake_timed_out", sorted({k.removesuffix("!x") for k in timed_out}) or None)

    def _hits(self, doc: Doc, text: str, lowered: str, in_text: set[str],
              from_regexes: list[tuple[str, int, int]]) -> list[Hit]:
        segments = get_ext(doc, "intake_segments") or [Segment("prose", 0, len(text))]
        tokens = _TokenArrays(doc, text, self._anchor_words) if len(doc) else None
        if tokens is not None:
            doc.user_data[TOKEN_ARRAY_KEY] = tokens.array  # the model's features read it too
        single = segments[0].kind if len(segments) == 1 else None

        def readable(rule_id: str, start: int, end: int) -> str | None:
            """The segment a match starts in, or None when it touches one the rule does not read."""
            read = self._read[rule_id]
            if single is not None:
                return single if single in read else None
            # a pattern must not start in the new message and take its words from a quoted reply
            segment = _segment_at(segments, start)
            if segment not in read or any(s.kind not in read for s in segments if s.start < end and start < s.end):
                return None
            return segment

        positives = []
        exclusion_phrases = []  # (key, start, end) of exclusion phrases, found with the positive ones
        raw = self.positive.token_and_phrase_matches(doc, lowered, tokens, None, in_text)
        raw.extend(from_regexes)
        exclusion_keys = self._exclusion_keys
        for match in raw:
            rule_id, start, end = match
            if rule_id in exclusion_keys:
                exclusion_phrases.append(match)
                continue
            segment = readable(rule_id, start, end)
            if segment is not None:
                positives.append((start, rule_id, end, segment))
        fired = {self._exclusion_key[p[1]] for p in positives if p[1] in self._exclusion_key}
        excluded: set[str] = set()
        if fired:
            matches = [m for m in exclusion_phrases if m[0] in fired]
            matches += self.exclusions.matches(doc, text, lowered, tokens, frozenset(fired), in_text)
            for key, start, end in matches:
                rule_id = key[:-2]
                if rule_id not in excluded and readable(rule_id, start, end) is not None:
                    excluded.add(rule_id)
        hits = []
        seen: set[tuple[str, int]] = set()
        rules = self.rules
        for start, rule_id, end, segment in sorted(positives, key=lambda h: (h[0], h[1])):
            if rule_id in excluded or (rule_id, start) in seen:
                continue
            seen.add((rule_id, start))
            rule = rules[rule_id]
            hits.append(Hit(rule_id, rule.kind, rule.label, start, end, text[start:end], segment, rule.weight))
        return hits


@Language.factory("intake_rule_matcher", default_config={"rules_dir": None})
def make_rule_matcher(nlp: Language, name: str, rules_dir: str | None) -> RuleMatcher:
    return RuleMatcher(nlp, load_rules(rules_dir), name=name)


def build_pipeline(rules_dir: str | Path | None = None) -> Language:
    """A blank English pipeline: lemmatizer, then the rule matcher over ``rules_dir``.

    The loaded rules are at ``nlp.get_pipe("intake_rule_matcher").ruleset``.
    """
    nlp = spacy.blank("en")
    nlp.add_pipe("intake_lemmatizer")
    nlp.add_pipe("intake_rule_matcher", config={"rules_dir": None if rules_dir is None else str(rules_dir)})
    return nlp


def analyse_docs(nlp: Language, requests: Iterable[NormalisedRequest], batch_size: int = 256) -> Iterator[Doc]:
    """Run the pipeline over normalised requests, keeping their segments on the docs."""
    def docs() -> Iterator[Doc]:
        for req in requests:
            doc = nlp.make_doc(req.text)
            set_ext(doc, "intake_segments", req.segments)
            set_ext(doc, "intake_text", req.text)
            yield doc
    yield from nlp.pipe(docs(), batch_size=batch_size)


@dataclass(frozen=True)
class ExampleFailure:
    """A rule example that did not behave as the rule says it should."""

    rule_id: str
    file: str
    line: int
    expected: str  # "match" or "no_match"
    text: str

    def __str__(self) -> str:
        verb = "should match but did not" if self.expected == "match" else "should not match but did"
        short = " ".join(self.text.split())
        short = short if len(short) <= 100 else short[:97] + "..."
        return f"{self.file}:{self.line}: rule {self.rule_id}: example {verb}: {short!r}"


def run_rule_examples(nlp: Language) -> tuple[list[ExampleFailure], dict[str, tuple[int, int]]]:
    """Run every rule's examples through the pipeline.

    Returns the failures and, per rule id, the number of passing (match, no_match) examples.
    """
    from .normalise import normalise

    ruleset: RuleSet = nlp.get_pipe("intake_rule_matcher").ruleset
    cases: list[tuple[Rule, str, str]] = []
    for rule in ruleset.rules:
        cases += [(rule, "match", t) for t in rule.examples_match]
        cases += [(rule, "no_match", t) for t in rule.examples_no_match]
    failures: list[ExampleFailure] = []
    passed: dict[str, list[int]] = {r.id: [0, 0] for r in ruleset.rules}
    docs = analyse_docs(nlp, (normalise(text) for _, _, text in cases))
    for (rule, expected, text), doc in zip(cases, docs):
        fired = any(h.rule_id == rule.id for h in doc._.intake_hits)
        if fired == (expected == "match"):
            passed[rule.id][0 if expected == "match" else 1] += 1
        else:
            failures.append(ExampleFailure(rule.id, rule.file, rule.line, expected, text))
    return failures, {k: (v[0], v[1]) for k, v in passed.items()}
