"""Second stage: match the rules against a request.

The rules are compiled into one spaCy ``Matcher`` (token patterns), one
``PhraseMatcher`` on lemmas (phrases) and a list of regular expressions (only
for what tokens cannot say: URLs, versions, keys). The matcher is a spaCy
pipeline component (``intake_rule_matcher``) on ``spacy.blank("en")`` with a
case-insensitive lookup lemmatizer (``intake_lemmatizer``, tables from
``spacy-lookups-data``), so "installing", "Installed" and "install" match one
lemma pattern. Each hit keeps its rule id, span, matched words and segment.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import spacy
from spacy.language import Language
from spacy.lookups import load_lookups
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc

from .errors import Errors, RulesError
from .normalise import NormalisedRequest, Segment
from .rules import Rule, RuleSet, load_rules

if not Doc.has_extension("intake_segments"):
    Doc.set_extension("intake_segments", default=None)
if not Doc.has_extension("intake_hits"):
    Doc.set_extension("intake_hits", default=None)


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

    def __call__(self, doc: Doc) -> Doc:
        cache = self._cache
        for token in doc:
            lower = token.lower
            lemma = cache.get(lower)
            if lemma is None:
                lemma = self._strings.add(self._table.get(lower, token.lower_))
                cache[lower] = lemma
            token.lemma = lemma
        return doc


@Language.factory("intake_lemmatizer")
def make_lemmatizer(nlp: Language, name: str) -> LowercaseLemmatizer:
    return LowercaseLemmatizer(nlp, name)


def _segment_at(segments: list[Segment], start: int) -> str:
    for seg in segments:
        if seg.start <= start < seg.end:
            return seg.kind
    return "prose"


class RuleMatcher:
    """spaCy component: finds every rule hit and stores them in ``doc._.intake_hits``."""

    def __init__(self, nlp: Language, ruleset: RuleSet, name: str = "intake_rule_matcher") -> None:
        self.name = name
        self.ruleset = ruleset
        self.rules = {r.id: r for r in ruleset.rules}
        self.matcher = Matcher(nlp.vocab, validate=True)
        self.phrases = PhraseMatcher(nlp.vocab, attr="LEMMA")
        self.regexes: list[tuple[str, bool, re.Pattern[str]]] = []  # (key, negative, regex)
        lemmatize = nlp.get_pipe("intake_lemmatizer") if "intake_lemmatizer" in nlp.pipe_names else None
        for rule in ruleset.rules:
            for negative, patterns in ((False, rule.patterns), (True, rule.exclude)):
                key = rule.id + ("!x" if negative else "")
                for index, pattern in enumerate(patterns, 1):
                    self._add(nlp, lemmatize, rule, key, index, negative, pattern)

    def _add(self, nlp, lemmatize, rule: Rule, key: str, index: int, negative: bool, pattern) -> None:
        if pattern.kind == "tokens":
            try:
                self.matcher.add(key, [pattern.value])
            except (ValueError, KeyError, TypeError) as exc:
                detail = " ".join(str(exc).split())[:300]
                raise RulesError(Errors.E008.format(file=rule.file, line=rule.line, rule_id=rule.id,
                                                    index=index, detail=detail)) from None
        elif pattern.kind == "phrase":
            doc = nlp.make_doc(pattern.value)
            if lemmatize is not None:
                doc = lemmatize(doc)
            self.phrases.add(key, [doc])
        else:
            flags = 0 if pattern.case_sensitive else re.IGNORECASE
            self.regexes.append((key, negative, re.compile(pattern.value, flags)))

    def __call__(self, doc: Doc) -> Doc:
        segments = doc._.intake_segments or [Segment("prose", 0, len(doc.text))]
        raw: list[tuple[str, int, int]] = []
        strings = doc.vocab.strings
        for match_id, start, end in self.matcher(doc):
            span = doc[start:end]
            raw.append((strings[match_id], span.start_char, span.end_char))
        for match_id, start, end in self.phrases(doc):
            span = doc[start:end]
            raw.append((strings[match_id], span.start_char, span.end_char))
        text = doc.text
        for key, _negative, regex in self.regexes:
            for m in regex.finditer(text):
                if m.end() > m.start():
                    raw.append((key, m.start(), m.end()))
        excluded: set[str] = set()
        positives: list[tuple[str, int, int, str]] = []
        for key, start, end in raw:
            rule_id = key[:-2] if key.endswith("!x") else key
            rule = self.rules[rule_id]
            segment = _segment_at(segments, start)
            if segment not in rule.read:
                continue
            if key.endswith("!x"):
                excluded.add(rule_id)
            else:
                positives.append((rule_id, start, end, segment))
        hits = []
        seen: set[tuple[str, int]] = set()
        for rule_id, start, end, segment in sorted(positives, key=lambda h: (h[1], h[0])):
            if rule_id in excluded or (rule_id, start) in seen:
                continue
            seen.add((rule_id, start))
            rule = self.rules[rule_id]
            hits.append(Hit(rule_id, rule.kind, rule.label, start, end, text[start:end], segment, rule.weight))
        doc._.intake_hits = hits
        return doc


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
            doc._.intake_segments = req.segments
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
