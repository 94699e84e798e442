"""Third stage: match the rules against a request, in its language.

The rules speak of concepts (``rules/vocabulary/``): named lists of words and phrases.
Each request is read once: spaCy's ``PhraseMatcher`` finds every concept's words on the
lemmas of a blank pipeline with a case-insensitive lookup lemmatizer
(``intake_lemmatizer``, tables from ``spacy-lookups-data``), so "installing",
"Installed" and "install" are one word; Hyperscan tells in one linear-time pass which
regexes can match at all, and only those run (on the ``regex`` module, each with a time
limit per request). Then each rule is tested over those concept positions: a concept,
a phrase, terms ``near`` each other or in order (``then``) within some words, or a
regex; ``unless`` concepts close to a match veto it. The matcher is a spaCy pipeline
component (``intake_rule_matcher``); each hit keeps its rule id, span, words and segment.

A regex that runs out of time is skipped for that request, which is then sent to
review naming the rule (``doc._.intake_timed_out``).
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import numpy as np
import regex
import spacy
from spacy.attrs import IDX, IS_PUNCT, IS_SPACE, LEMMA, LOWER, NORM, ORTH, SPACY
from spacy.language import Language
from spacy.lookups import load_lookups
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc
from spacy.util import minibatch

from .collector import collector_paused
from .normalise import NormalisedRequest, Segment
from .prefilter import Prefilter
from .errors import RulesError
from .rules import ANY_LANGUAGE, CONCEPT_RE, Rule, RuleSet, load_rules, rules_source

for _name in ("intake_segments", "intake_hits", "intake_text", "intake_timed_out", "intake_concepts"):
    # segments of the text; rule hits; the text, when known (so it need not be rebuilt
    # from tokens); ids of rules whose regex ran out of time; concepts the model reads
    if not Doc.has_extension(_name):
        Doc.set_extension(_name, default=None)

#: Seconds one regex may spend on one request. The ``regex`` module counts the process's
#: CPU time, so waiting for a core does not count; rule regexes take well under a millisecond.
REGEX_TIME_LIMIT = 0.05
#: Whitespace-separated chunks whose split the tokenizer keeps (some 300 bytes each)
TOKENIZER_CACHE_SIZE = 50_000
#: What the rule matcher and the model's features read of each token, in one
#: ``to_array`` call per doc.
TOKEN_ATTRS = [LEMMA, IDX, SPACY, IS_PUNCT, IS_SPACE]
#: ``doc.user_data`` key under which the rule matcher leaves that array for later stages
TOKEN_ARRAY_KEY = "intake_token_array"
_IDX, _SPACY = TOKEN_ATTRS.index(IDX), TOKEN_ATTRS.index(SPACY)
#: Segments whose words and concepts the model reads (quoted replies, signatures and
#: hidden comments are not the customer's new message).
MODEL_SEGMENTS = ("subject", "prose", "heading", "code", "forwarded")


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


class Hit(NamedTuple):
    """One rule firing on one span of the request (a named tuple: a request makes a few
    dozen, and a frozen dataclass costs three times as much to make)."""

    rule_id: str
    kind: str
    label: str
    start: int  # character offsets in the normalised text
    end: int
    text: str
    segment: str
    weight: float


class LowercaseLemmatizer:
    """Lemmatizer that ignores case, from lookups: ``lookup:<lang>`` is the lemma table of
    ``spacy-lookups-data`` (spaCy's own lookup mode is case-sensitive), ``simplemma:<lang>``
    simplemma's dictionaries (full inflection tables for Russian, German, Polish …, where
    spaCy's tables miss common forms). Sources are tried in order; a word none of them
    knows is its own lemma.

    The pipeline's own lemmatizer (``attach=True``) looks each word up once, when the
    vocabulary first meets it: the lemma becomes the word's ``NORM`` (a lexeme attribute,
    computed by ``vocab.lex_attr_getters``), and a doc's lemmas are its norms, copied in
    one array operation. Other instances (the English lemmas of another language's
    patterns) look words up per doc and keep what they found."""

    def __init__(self, nlp: Language, name: str = "intake_lemmatizer", sources: Iterable[str] = ("lookup:en",),
                 attach: bool = False) -> None:
        self.name = name
        self._sources = [_lemma_source(s) for s in sources]
        self._cache: dict[int, int] = {}
        self._strings = nlp.vocab.strings
        self.attached = attach
        if attach:
            vocab = nlp.vocab
            vocab.lex_attr_getters[NORM] = self.lemma_of
            for lexeme in vocab:  # the words the vocabulary already holds
                lexeme.norm_ = self.lemma_of(lexeme.orth_)
            # the tokenizer's special cases ("doesn't" -> "does" + "n't") give their tokens a
            # norm of their own, which would hide the lemma: they keep splitting, without it
            rules = nlp.tokenizer.rules or {}
            if any(NORM in piece or "NORM" in piece for pieces in rules.values() for piece in pieces):
                nlp.tokenizer.rules = {text: [{k: v for k, v in piece.items() if k not in (NORM, "NORM")}
                                              for piece in pieces] for text, pieces in rules.items()}

    def lemma_of(self, word: str) -> str:
        """The lower-case lemma of ``word``."""
        form = word.lower()
        return next((found for source in self._sources if (found := source(form)) is not None), form)

    def __call__(self, doc: Doc) -> Doc:
        if not len(doc):
            return doc
        if self.attached:
            doc.from_array([LEMMA], doc.to_array([NORM]))
            return doc
        cache = self._cache
        lemmas = [cache.get(h) or self._lemma(h) for h in doc.to_array(LOWER).tolist()]
        doc.from_array([LEMMA], np.array(lemmas, dtype=np.uint64).reshape(-1, 1))
        return doc

    def pipe(self, docs: Iterable[Doc], batch_size: int = 256) -> Iterator[Doc]:
        yield from _in_batches(self, docs, batch_size)

    def _lemma(self, lower: int) -> int:
        """Hash of the lemma of the lower-case form ``lower``, looked up once and kept."""
        self._cache[lower] = lemma = self._strings.add(self.lemma_of(self._strings[lower]))
        return lemma


def _lemma_source(source: str) -> Callable[[str], str | None]:
    """``lower-case form -> its lower-case lemma, or None if unknown``."""
    kind, _, lang = source.partition(":")
    if kind == "simplemma":
        import simplemma

        try:
            simplemma.lemmatize("test", lang=lang)
        except (ValueError, KeyError) as exc:
            raise RulesError(f"[E091] lemmas: simplemma has no language {lang!r}: {exc}") from None

        def from_simplemma(form: str) -> str | None:
            lemma = simplemma.lemmatize(form, lang=lang).lower()
            return lemma if lemma != form or simplemma.is_known(form, lang=lang) else None
        return from_simplemma
    try:
        table = load_lookups(lang=lang, tables=["lemma_lookup"]).get_table("lemma_lookup")
    except ValueError as exc:  # spaCy's message names the language and the table
        raise RulesError(f"[E091] lemmas: {source}: {exc} (name only languages spacy-lookups-data has a "
                         "lemma_lookup table for)") from None

    def from_table(form: str) -> str | None:
        found = table.get(form)
        if found is None and form[:1].isalpha():  # German nouns are listed capitalised
            found = table.get(form[:1].upper() + form[1:])
        return None if found is None else found.lower()
    return from_table


def _in_batches(component: Callable[[Doc], Doc], docs: Iterable[Doc], batch_size: int) -> Iterator[Doc]:
    """A component's ``pipe``: each batch through the component before the next stage sees
    any of it, so each stage's tables stay in the CPU caches over the batch."""
    for batch in minibatch(docs, size=batch_size):
        with collector_paused():
            for doc in batch:
                component(doc)
        yield from batch


@Language.factory("intake_lemmatizer", default_config={"sources": ["lookup:en"]})
def make_lemmatizer(nlp: Language, name: str, sources: list[str]) -> LowercaseLemmatizer:
    return LowercaseLemmatizer(nlp, name, sources, attach=True)


class _Regexes:
    """Many regexes over one text: the :class:`Prefilter` says which can match; only those
    run on the ``regex`` module, within the time limit. The regexes every language shares
    and a language's own are prefiltered apart, so the shared ones are compiled for
    Hyperscan once per process, not once per language."""

    def __init__(self, shared: list[tuple[str, str, bool]], own: list[tuple[str, str, bool]] = ()) -> None:
        patterns = list(shared) + list(own)
        self.keys = [key for key, _, _ in patterns]
        self.compiled = [regex.compile(p, 0 if case else regex.IGNORECASE) for _, p, case in patterns]
        self._shared = Prefilter([(p, case) for _, p, case in shared])
        self._own = Prefilter([(p, case) for _, p, case in own]) if own else None
        self._offset = len(shared)

    def candidates(self, text: str) -> set[int]:
        """Indexes of the regexes that can match ``text``."""
        found = self._shared.candidates(text)
        if self._own is not None:
            found |= {self._offset + i for i in self._own.candidates(text)}
        return found

    def spans(self, text: str) -> tuple[dict[str, list[tuple[int, int]]], set[str]]:
        """Character spans of each key's matches, and the keys that ran out of time."""
        out: dict[str, list[tuple[int, int]]] = {}
        timed_out = set()
        for i in sorted(self.candidates(text)):
            try:
                found = [m.span() for m in self.compiled[i].finditer(text, timeout=REGEX_TIME_LIMIT)]
            except TimeoutError:
                timed_out.add(self.keys[i])
                continue
            if found:
                out.setdefault(self.keys[i], []).extend(found)
        return out, timed_out


Span = tuple[int, int]  # tokens [start, end)


def _tokens_over(starts: list[int], ends: list[int], a: int, b: int) -> Span | None:
    """The tokens that overlap characters [a, b) (spaCy's ``char_span(..., "expand")``,
    without building a Span)."""
    first = max(0, bisect_right(starts, a) - 1)
    if first < len(ends) and ends[first] <= a:
        first += 1
    last = bisect_left(starts, b)
    return (first, last) if first < last else None


def _near(lists: list[list[Span]], within: int) -> list[Span]:
    """Spans holding one occurrence of every term, in any order, at most ``within`` words
    from the first term's start to the last one's start; one per occurrence of the first term.
    Each list is in order, so the nearest occurrence of a term is found by bisection (the
    earlier of two as near, as ``min`` over the list would pick)."""
    out = []
    others = [(spans, [s[0] for s in spans]) for spans in lists[1:]]
    for start, end in lists[0]:
        lo, hi = start, end
        for spans, starts in others:
            i = bisect_left(starts, start)
            best, distance = (spans[i], starts[i] - start) if i < len(starts) else (None, 0)
            if i > 0 and (best is None or start - starts[i - 1] <= distance):
                before = starts[i - 1]
                best, distance = spans[bisect_left(starts, before)], start - before
            if distance > within:
                break
            lo, hi = min(lo, best[0]), max(hi, best[1])
        else:
            out.append((lo, hi))
    return out


def _then(lists: list[list[Span]], within: int) -> list[Span]:
    """Spans holding the terms in order, each after the one before, the last starting at
    most ``within`` words after the first starts."""
    out = []
    for start, end in lists[0]:
        at = end
        for spans in lists[1:]:
            for nxt in spans:  # the earliest leaves most room
                if nxt[0] >= at:
                    break
            else:
                break
            if nxt[0] - start > within:
                break
            at = nxt[1]
        else:
            out.append((start, at))
    return out


class _InSegments(dict):
    """The spans of each term that lie within the segments a rule reads, worked out for a
    term when a rule first asks for it (a request names hundreds of concepts; a rule asks
    for a few)."""

    def __init__(self, found: dict[str, list[Span]], token_segment: list[str], read: tuple[str, ...]) -> None:
        super().__init__()
        self.found, self.token_segment, self.read = found, token_segment, read

    def get(self, term: str, default: Any = None) -> Any:
        if term in self:
            spans = self[term]
            return default if spans is None else spans
        spans = self.found.get(term)
        if spans:
            seg, read = self.token_segment, self.read
            spans = [s for s in spans if seg[s[0]] in read and seg[s[1] - 1] in read]
        self[term] = spans = spans or None
        return default if spans is None else spans


class RuleMatcher:
    """spaCy component: finds every rule hit and stores them in ``doc._.intake_hits``."""

    def __init__(self, nlp: Language, ruleset: RuleSet, name: str = "intake_rule_matcher",
                 language: str = "en") -> None:
        self.name = name
        self.ruleset = ruleset
        self.language = language
        pack = ruleset.languages[language]
        self.rules = ruleset.rules
        strings = nlp.vocab.strings
        lemmatize = nlp.get_pipe("intake_lemmatizer") if "intake_lemmatizer" in nlp.pipe_names else (lambda d: d)
        # the concepts each concept counts for: itself and every concept that includes it
        owners: dict[str, set[str]] = {name: {name} for name in ruleset.concepts}
        for concept in ruleset.concepts.values():
            for sub in self._included(concept.name):
                owners[sub].add(concept.name)
        # another language's pipeline also reads English words (customers everywhere paste
        # English messages and menu names), reduced to their English lemmas, which is what
        # the language's lemmatizer gives an English word it does not know (English comes
        # last in every pack's lemmas): "bots" finds "bot", while the German "bietet"
        # (lemma "bieten") does not, as it would if "bot" were read as German; the English
        # "die" is not the German article (lemma "der")
        english_lemmatize = LowercaseLemmatizer(nlp, "english", ["lookup:en"]) if language != "en" else lemmatize
        # each distinct word or phrase (as the matcher reads it) is one pattern, standing
        # for every concept that lists it, every concept including one of those, and the
        # phrase it is: a word listed by ten concepts is found once, not ten times
        patterns: dict[tuple[str, tuple[int, ...]], tuple[Doc, set[str]]] = {}
        regexes: list[tuple[str, str, bool]] = []

        def add(words: Iterable[str], names: Iterable[str], english: Iterable[str] = ()) -> None:
            lemma_docs, form_docs = [], []
            for word in words:
                exact = word.startswith("=")
                doc = nlp.make_doc(word[1:] if exact else word.lower())
                (form_docs if exact else lemma_docs).append(doc if exact else lemmatize(doc))
                if not exact and len(doc) == 1 and doc[0].lemma_ != doc[0].lower_:
                    # a word written in its dictionary form also finds the words it is the lemma
                    # of where the lemmatizer reads the form itself as another word's: "коробка"
                    # (read as "коробок") must find "коробку" (read as "коробка")
                    as_lemma = nlp.make_doc(doc[0].lower_)
                    as_lemma[0].lemma_ = doc[0].lower_
                    lemma_docs.append(as_lemma)
            for word in english:
                if word.startswith("="):
                    form_docs.append(nlp.make_doc(word[1:]))
                else:
                    as_english = english_lemmatize(nlp.make_doc(word.lower()))
                    lemma_docs.append(as_english)
                    # ... and as written, where the language's lemmatizer takes the English
                    # word for one of its own ("page" for the Spanish "pagar")
                    if [t.lemma for t in as_english] != [t.lemma for t in lemmatize(nlp.make_doc(word.lower()))]:
                        form_docs.append(nlp.make_doc(word.lower()))
            for attr, docs in (("LEMMA", lemma_docs), ("LOWER", form_docs)):
                for doc in docs:
                    pattern = (attr, tuple(t.lemma if attr == "LEMMA" else t.lower for t in doc))
                    patterns.setdefault(pattern, (doc, set()))[1].update(names)

        # words of English (and of every language) that mean something else in this one
        false_friends = frozenset(pack.false_friends)

        def counts_here(word: str) -> bool:
            return word.lstrip("=").lower() not in false_friends

        own_regexes: list[tuple[str, str, bool]] = []
        for concept in ruleset.concepts.values():
            own = concept.words.get(language, ()) + tuple(filter(counts_here, concept.words.get(ANY_LANGUAGE, ())))
            if language == "en":
                add(own, owners[concept.name])
            else:
                add(own, owners[concept.name], tuple(filter(counts_here, concept.words.get("en", ()))))
            regexes += [(concept.name, p, False) for p in concept.regexes]
            own_regexes += [(concept.name, p, False) for p in pack.regexes.get(concept.name, ())]
        self._concept_regex_owners = owners
        self._phrases = sorted({t for r in self.rules for t in r.terms() if not CONCEPT_RE.match(t)})
        for phrase in self._phrases:
            add([phrase], [phrase])
        self._by_lemma = PhraseMatcher(nlp.vocab, attr="LEMMA")
        self._by_form = PhraseMatcher(nlp.vocab, attr="LOWER")
        # match key -> what it stands for; the patterns that stand for the same concepts
        # share a key, so a request's matches come grouped by what they stand for
        self._names: dict[int, tuple[str, ...]] = {}
        for (attr, _), (doc, names) in patterns.items():
            key = f"{attr} " + " ".join(sorted(names))
            self._names[strings.add(key)] = tuple(sorted(names))
            (self._by_lemma if attr == "LEMMA" else self._by_form).add(key, [doc])
        for rule in self.rules:
            regexes += [(f"{rule.id}\0{i}", c.regex, c.case_sensitive)
                        for i, c in enumerate(rule.match) if c.form == "regex"]
        self._regexes = _Regexes(regexes, own_regexes)
        self._has_forms = len(self._by_form) > 0
        # a language whose word order is free reads every ``then`` as ``near``: "Können Sie
        # Bitrix24 auf unserem Server installieren?" puts the verb English puts first last
        free_order = pack.word_order == "free"
        # each condition, made once: (its rule's index, what it needs found, how it matches,
        # its terms, within, its regex's key), filed under the needed term that the fewest
        # conditions use (the least often found), so a request looks only at conditions one
        # of its rarer terms points to
        uses = Counter(t for rule in self.rules for c in rule.match for t in c.terms)
        self._conditions_of_term: dict[str, list[tuple]] = {}
        for i, rule in enumerate(self.rules):
            for j, c in enumerate(rule.match):
                key = f"{rule.id}\0{j}" if c.form == "regex" else None
                needs = frozenset([key] if key else c.terms)
                form = "near" if c.form == "near" or (c.form == "then" and free_order and not c.in_order) else c.form
                self._conditions_of_term.setdefault(min(needs, key=lambda t: (uses[t], t)), []).append(
                    (i, needs, form, c.terms, c.within, key))
        self._filed_under = frozenset(self._conditions_of_term)
        self._concept_names = frozenset(ruleset.concepts)

    def _included(self, name: str) -> set[str]:
        out = set()
        for sub in self.ruleset.concepts[name].include:
            out |= {sub} | self._included(sub)
        return out

    def pipe(self, docs: Iterable[Doc], batch_size: int = 256) -> Iterator[Doc]:
        yield from _in_batches(self, docs, batch_size)

    def __call__(self, doc: Doc) -> Doc:
        text = get_ext(doc, "intake_text")
        if text is None:
            text = doc.text
        segments = get_ext(doc, "intake_segments") or [Segment("prose", 0, len(text))]
        with collector_paused():
            hits, timed_out, concepts = self.hits(doc, text, segments)
        set_ext(doc, "intake_hits", hits)
        set_ext(doc, "intake_concepts", concepts)
        set_ext(doc, "intake_timed_out", sorted(timed_out) or None)
        return doc

    def occurrences(self, doc: Doc, text: str, starts: list[int], ends: list[int],
                    ) -> tuple[dict[str, list[Span]], dict[str, list[tuple[int, int]]], set[str]]:
        """Where each concept and phrase occurs (token spans, in order), the character spans
        of each rule regex, and the regex keys that ran out of time. ``starts`` and ``ends``
        are each token's character offsets."""
        found: dict[str, list[Span]] = {}
        names = self._names
        matches = self._by_lemma(doc)
        if self._has_forms:
            matches += self._by_form(doc)
        by_key: dict[int, list[Span]] = {}
        for key, start, end in matches:
            spans = by_key.get(key)
            if spans is None:
                by_key[key] = [(start, end)]
            else:
                spans.append((start, end))
        for key, spans in by_key.items():
            for name in names[key]:
                if name in found:
                    found[name] = found[name] + spans
                else:
                    found[name] = spans
        by_regex, timed_out = self._regexes.spans(text)
        # a concept whose regex ran out of time is unknown, and so is every concept including it
        timed_out |= {name for key in timed_out if "\0" not in key for name in self._concept_regex_owners[key]}
        rule_regexes = {}
        for key, spans in by_regex.items():
            if "\0" in key:
                rule_regexes[key] = spans
                continue
            token_spans = [t for a, b in spans if (t := _tokens_over(starts, ends, a, b))]
            for name in self._concept_regex_owners[key]:
                found[name] = found.get(name, []) + token_spans  # lists may be shared: never extended in place
        for spans in found.values():
            spans.sort()
        return found, rule_regexes, timed_out

    def hits(self, doc: Doc, text: str, segments: list[Segment]) -> tuple[list[Hit], set[str], tuple[str, ...]]:
        """Every rule hit in ``doc``, the ids of rules skipped because a regex timed out, and
        the concepts named in MODEL_SEGMENTS."""
        arr = doc.to_array(TOKEN_ATTRS)
        doc.user_data[TOKEN_ARRAY_KEY] = arr  # the model's features read it too
        idx = arr[:, _IDX]
        starts = idx.tolist()
        n = len(starts)
        # a token ends where the next starts, less its trailing space
        ends = (idx[1:] - arr[:-1, _SPACY]).tolist() + [len(text)] if n else []
        found, rule_regexes, timed_out = self.occurrences(doc, text, starts, ends)
        seg_starts = [s.start for s in segments]
        kinds = [s.kind for s in segments]

        def segment_of(char: int) -> str:
            return kinds[max(0, bisect_right(seg_starts, char) - 1)]

        token_segment = None
        if len(segments) > 1:
            at = np.maximum(np.searchsorted(np.array(seg_starts, dtype=idx.dtype), idx, side="right") - 1, 0).tolist()
            token_segment = [kinds[i] for i in at]
        by_read: dict[tuple[str, ...], dict[str, list[Span]]] = {}
        kinds_present = set(kinds)
        hits: list[Hit] = []
        skipped: set[str] = set()
        present = found.keys() | rule_regexes.keys()
        if timed_out:  # rules with a term whose regex, or with a regex of their own, ran out of time
            skipped = {rule.id for rule in self.rules if rule.terms() & timed_out}
            skipped |= {key.partition("\0")[0] for key in timed_out if "\0" in key}
        # the conditions whose every term was found, by rule (the order of rules and of
        # conditions changes no hit: each rule's hits are sorted, and all of them at the end)
        ready: dict[int, list[tuple]] = {}
        conditions_of_term = self._conditions_of_term
        for term in present & self._filed_under:
            for cond in conditions_of_term[term]:
                if cond[1] <= present:
                    ready.setdefault(cond[0], []).append(cond)
        for i, conditions in ready.items():
            rule = self.rules[i]
            read = rule.read
            visible = by_read.get(read)
            if visible is None:
                if token_segment is None:
                    visible = found if kinds[0] in read else {}
                elif kinds_present.issubset(read):  # the rule reads every segment this request has
                    visible = found
                else:
                    visible = _InSegments(found, token_segment, read)
                by_read[read] = visible
            spans: list[Span] = []
            char_spans: list[tuple[int, int]] = []
            for _, _, form, terms, within, key in conditions:
                if key:
                    for a, b in rule_regexes[key]:
                        if segment_of(a) in read and segment_of(max(a, b - 1)) in read:
                            char_spans.append((a, b))
                    continue
                lists = [visible.get(t) for t in terms]
                if not all(lists):
                    continue
                if form == "near":
                    spans += _near(lists, within)
                elif form == "then":
                    spans += _then(lists, within)
                else:
                    spans += lists[0]
            if char_spans:
                spans += [(max(0, bisect_right(starts, a) - 1), max(1, bisect_right(starts, b - 1))) for a, b in char_spans]
            if not spans:
                continue
            if rule.unless:
                vetoes = [s for t in rule.unless for s in visible.get(t, ())]
                w = rule.unless_within
                spans = [s for s in spans if not any(v[0] < s[1] + w and v[1] > s[0] - w for v in vetoes)]
                char_spans = [c for c in char_spans
                              if (max(0, bisect_right(starts, c[0]) - 1), max(1, bisect_right(starts, c[1] - 1))) in spans]
            seen = set()
            for a, b in sorted(char_spans + [(starts[s], ends[e - 1]) for s, e in spans if e <= n]):
                if a in seen:
                    continue
                seen.add(a)
                hits.append(Hit(rule.id, rule.kind, rule.label, a, b, text[a:b], segment_of(a), rule.weight))
        hits.sort(key=lambda h: (h.start, h.rule_id))
        names = self._concept_names.intersection(found)
        if token_segment is None or all(kind in MODEL_SEGMENTS for kind in kinds):
            concepts = tuple(sorted(names)) if kinds[0] in MODEL_SEGMENTS else ()
        else:
            concepts = tuple(sorted(k for k in names if any(token_segment[s[0]] in MODEL_SEGMENTS for s in found[k])))
        return hits, skipped, concepts


@Language.factory("intake_rule_matcher", default_config={"rules_dir": None, "language": "en"})
def make_rule_matcher(nlp: Language, name: str, rules_dir: str | None, language: str) -> RuleMatcher:
    return RuleMatcher(nlp, load_rules(rules_dir), name=name, language=language)


def build_pipeline(rules_dir: str | Path | None = None, language: str = "en") -> Language:
    """A blank pipeline for ``language``: its tokenizer and lemma tables (as its language
    pack says), then the rule matcher over ``rules_dir`` with that language's words.

    The loaded rules are at ``nlp.get_pipe("intake_rule_matcher").ruleset``. A pipeline
    reads requests without changing itself (its vocabulary only grows), so one is built
    per process for the same rules files and language and shared: building one takes
    seconds (thousands of patterns, a lemma dictionary, a Hyperscan database).
    """
    ruleset = load_rules(rules_dir)
    built_as = (str(rules_source(rules_dir).path), ruleset.digest, language)
    nlp = _BUILT.get(built_as)
    if nlp is not None:
        return nlp
    pack = ruleset.languages[language]
    nlp = spacy.blank(pack.tokenizer)
    nlp.add_pipe("intake_lemmatizer", config={"sources": list(pack.lemmas)})
    # spaCy's tokenizer remembers how it split each whitespace-separated chunk, but not for
    # the rest of a text once a special case has been applied in it, and a newline is one
    # (the one after the subject, in most requests): the special cases that only say a run
    # of whitespace is one token, which it is anyway, go; and a process meets more distinct
    # chunks than spaCy's default 10,000
    tokenizer = nlp.tokenizer
    tokenizer.rules = {text: pieces for text, pieces in tokenizer.rules.items()
                       if text.strip() or not (len(pieces) == 1 and set(pieces[0]) <= {ORTH, "ORTH"})}
    tokenizer.max_cache_size = TOKENIZER_CACHE_SIZE
    nlp.add_pipe("intake_rule_matcher", config={"rules_dir": None if rules_dir is None else str(rules_dir),
                                                "language": language})
    if len(_BUILT) >= 16:
        _BUILT.clear()
    _BUILT[built_as] = nlp
    return nlp


#: (rules folder, digest of its files, language) -> the pipeline built for them
_BUILT: dict[tuple[str, str, str], Language] = {}


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


def _example_file(pack: Any, text: str) -> tuple[str, int]:
    """The pack file and line an example is written in (the first file, line 0, if not found)."""
    needle = text[:50]
    for file in pack.files:
        for i, line in enumerate(Path(file).read_text(encoding="utf-8").splitlines(), 1):
            if needle in line:
                return file, i
    return pack.files[0], 0


def concepts_missing(ruleset: RuleSet, language: str) -> list[tuple[str, str]]:
    """(rule id, concept) for every concept a rule names that has no words in ``language``
    (nor regexes, nor an included concept that has)."""
    pack = ruleset.languages[language]
    memo: dict[str, bool] = {}

    def covered(name: str) -> bool:
        if name not in memo:
            memo[name] = False  # includes have no cycles (checked on load); this only guards
            c = ruleset.concepts[name]
            memo[name] = bool(c.words.get(language) or c.words.get(ANY_LANGUAGE) or c.regexes or pack.regexes.get(name)
                              or any(covered(sub) for sub in c.include))
        return memo[name]

    return [(rule.id, term) for rule in ruleset.rules for term in sorted(rule.terms())
            if CONCEPT_RE.match(term) and not covered(term)]


def run_rule_examples(nlp: Language) -> tuple[list[ExampleFailure], dict[str, tuple[int, int]]]:
    """Run every rule's examples through the pipeline.

    Returns the failures and, per rule id, the number of passing (match, no_match) examples.
    """
    from .normalise import normaliser_of

    matcher: RuleMatcher = nlp.get_pipe("intake_rule_matcher")
    ruleset = matcher.ruleset
    normalise = normaliser_of(ruleset.segment_words).normalise
    pack = ruleset.languages[matcher.language]
    cases: list[tuple[Rule, str, str]] = []
    for rule, match, no_match in ruleset.examples_in(matcher.language):
        cases += [(rule, "match", t) for t in match]
        cases += [(rule, "no_match", t) for t in no_match]
    failures: list[ExampleFailure] = []
    passed: dict[str, list[int]] = {r.id: [0, 0] for r in ruleset.rules}
    docs = analyse_docs(nlp, (normalise(text) for _, _, text in cases))
    for (rule, expected, text), doc in zip(cases, docs):
        fired = any(h.rule_id == rule.id for h in doc._.intake_hits)
        if fired == (expected == "match"):
            passed[rule.id][0 if expected == "match" else 1] += 1
        else:
            file, line = (rule.file, rule.line) if matcher.language == "en" else _example_file(pack, text)
            failures.append(ExampleFailure(rule.id, file, line, expected, text))
    return failures, {k: (v[0], v[1]) for k, v in passed.items()}
