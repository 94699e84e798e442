"""Read requests once: normalise and mask, run the spaCy pipeline with the rule
matcher, and keep what the model and the decisions need (lemma n-grams and rule
hits). Both training and classification go through here, so the model sees
exactly the features at prediction time that it saw when it was trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from spacy.attrs import IDX, IS_PUNCT, IS_SPACE, LEMMA
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch

from .language import LanguageDetector, LanguageOf
from .matching import MODEL_SEGMENTS, TOKEN_ARRAY_KEY, TOKEN_ATTRS, Hit, analyse_docs, build_pipeline, get_ext
from .normalise import NormalisedRequest, Normaliser, normaliser_of
from .request import Request
from .rules import RuleSet


@dataclass
class Analysed:
    """A request after normalising, masking and rule matching."""

    request: Request
    normalised: NormalisedRequest
    hits: list[Hit]
    tokens: list[str]  # lower-case lemmas of MODEL_SEGMENTS, in order
    #: ids of rules skipped because a regex of theirs ran out of time on this request
    timed_out: tuple[str, ...] = ()
    #: vocabulary concepts named in MODEL_SEGMENTS, sorted
    concepts: tuple[str, ...] = ()
    #: the request's language (SPEC §9), and where that came from
    language: LanguageOf = LanguageOf("en", "default", True)

    def features(self, ngram_max: int = 2, concept_features: bool = True) -> list[str]:
        """Lemma n-grams plus one ``concept=<NAME>`` feature per concept the request names.

        Rule hits are not features: rules act in the decision (:mod:`.decide`), so a rule
        edited in YAML takes effect without retraining."""
        toks = self.tokens
        out = list(toks)
        for n in range(2, ngram_max + 1):
            out += map(" ".join, zip(*(toks[k:] for k in range(n))))
        if concept_features:
            out += ["concept=" + name for name in self.concepts]
        return out


class Analyser:
    """Turns requests into :class:`Analysed` records, in batches: each request is read by
    the pipeline of its language (made on first use), or by the English one when the
    rules have no pack for its language."""

    def __init__(self, rules_dir: str | Path | None = None) -> None:
        self.rules_dir = rules_dir
        self.nlp: Language = build_pipeline(rules_dir)
        self.ruleset: RuleSet = self.nlp.get_pipe("intake_rule_matcher").ruleset
        #: cuts requests into segments with the words of these rules (``segments:``)
        self.normaliser: Normaliser = normaliser_of(self.ruleset.segment_words)
        self.pipelines: dict[str, Language] = {"en": self.nlp}
        self.detector = LanguageDetector(self.ruleset.languages, function_words={
            code: pack.function_words for code, pack in self.ruleset.languages.items()})

    def pipeline(self, language: str) -> Language:
        """The pipeline that reads ``language`` (English for a language without a pack)."""
        if language not in self.ruleset.languages:
            language = "en"
        nlp = self.pipelines.get(language)
        if nlp is None:
            nlp = self.pipelines[language] = build_pipeline(self.rules_dir, language)
        return nlp

    def warm_up(self) -> "Analyser":
        """Build every language's pipeline now (a service pays this at start, once)."""
        for code in self.ruleset.languages:
            self.pipeline(code)
        return self

    def analyse(self, requests: Iterable[Request], batch_size: int = 256) -> Iterator[Analysed]:
        # a batch is normalised before any of it is tokenized: each stage's regexes and
        # tables stay in the CPU caches over the batch instead of taking turns per request
        for batch in minibatch(requests, size=batch_size):
            norms = [self.normaliser.normalise(req.text, req.subject) for req in batch]
            languages = [self.detector.language_of(norm, req.language) for req, norm in zip(batch, norms)]
            read_as = [lang.reads or (lang.code if lang.supported else "en") for lang in languages]
            docs: list[Doc | None] = [None] * len(batch)
            for code in dict.fromkeys(read_as):
                at = [i for i, c in enumerate(read_as) if c == code]
                for i, doc in zip(at, analyse_docs(self.pipeline(code), [norms[i] for i in at], batch_size=batch_size)):
                    docs[i] = doc
            for req, norm, doc, lang in zip(batch, norms, docs, languages):
                yield Analysed(req, norm, list(get_ext(doc, "intake_hits")), _model_tokens(doc, norm),
                               tuple(get_ext(doc, "intake_timed_out") or ()), get_ext(doc, "intake_concepts") or (),
                               lang)


class _LemmaTexts(dict):
    """Lemma hash -> its text, kept once looked up: the StringStore decodes a new str
    each time, and a request asks for some fifty. One table per StringStore (so threads
    classifying with different rules folders never share one); emptied when it grows large."""

    MAX_SIZE = 200_000

    def __init__(self, strings) -> None:
        super().__init__()
        self.strings = strings

    def __missing__(self, key: int) -> str:
        if len(self) >= self.MAX_SIZE:
            self.clear()
        text = self[key] = self.strings[key]
        return text


_LEMMA_TEXTS: dict[int, _LemmaTexts] = {}  # id of a StringStore -> its table (which keeps the store alive)


def _lemma_texts(strings) -> _LemmaTexts:
    table = _LEMMA_TEXTS.get(id(strings))
    if table is None:
        if len(_LEMMA_TEXTS) >= 8:  # pipelines come and go (tests, retraining): keep a few
            _LEMMA_TEXTS.clear()
        table = _LEMMA_TEXTS[id(strings)] = _LemmaTexts(strings)
    return table


_IDX, _IS_PUNCT, _IS_SPACE, _LEMMA = (TOKEN_ATTRS.index(a) for a in (IDX, IS_PUNCT, IS_SPACE, LEMMA))


def _model_tokens(doc, norm: NormalisedRequest) -> list[str]:
    """Lemmas of the words in the segments the model reads (no punctuation or spaces)."""
    if not len(doc):
        return []
    arr = doc.user_data.get(TOKEN_ARRAY_KEY)  # left by the rule matcher
    if arr is None or len(arr) != len(doc):
        arr = doc.to_array(TOKEN_ATTRS)
    starts = arr[:, _IDX]
    keep = (arr[:, _IS_PUNCT] == 0) & (arr[:, _IS_SPACE] == 0)
    if not norm.segments or any(seg.kind not in MODEL_SEGMENTS for seg in norm.segments):
        inside = np.zeros(len(doc), dtype=bool)
        for seg in norm.segments:
            if seg.kind in MODEL_SEGMENTS:
                inside |= (starts >= seg.start) & (starts < seg.end)
        keep &= inside
    return list(map(_lemma_texts(doc.vocab.strings).__getitem__, arr[keep, _LEMMA].tolist()))


@lru_cache(maxsize=4)
def shared_analyser(rules_dir: str | None = None) -> Analyser:
    """One analyser per rules folder, built on first use (building takes ~1 s)."""
    return Analyser(rules_dir)
