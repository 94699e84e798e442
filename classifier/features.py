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

from spacy.language import Language

from .matching import Hit, analyse_docs, build_pipeline
from .normalise import NormalisedRequest, normalise
from .request import Request
from .rules import RuleSet

#: Segments whose words the model reads (quoted replies, signatures and hidden
#: comments are not the customer's new message).
MODEL_SEGMENTS = ("subject", "prose", "code")


@dataclass
class Analysed:
    """A request after normalising, masking and rule matching."""

    request: Request
    normalised: NormalisedRequest
    hits: list[Hit]
    tokens: list[str]  # lower-case lemmas of MODEL_SEGMENTS, in order

    def features(self, ngram_max: int = 2, rule_features: bool = True) -> list[str]:
        """Lemma n-grams plus one ``rule=<id>`` feature per rule that fired."""
        toks = self.tokens
        out = list(toks)
        for n in range(2, ngram_max + 1):
            out += [" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)]
        if rule_features:
            out += ["rule=" + rid for rid in sorted({h.rule_id for h in self.hits})]
        return out


class Analyser:
    """Turns requests into :class:`Analysed` records, in batches."""

    def __init__(self, rules_dir: str | Path | None = None) -> None:
        self.nlp: Language = build_pipeline(rules_dir)
        self.ruleset: RuleSet = self.nlp.get_pipe("intake_rule_matcher").ruleset

    def analyse(self, requests: Iterable[Request], batch_size: int = 256) -> Iterator[Analysed]:
        reqs: list[Request] = []
        norms: list[NormalisedRequest] = []

        def feed() -> Iterator[NormalisedRequest]:
            for req in requests:
                norm = normalise(req.text, req.subject)
                reqs.append(req)
                norms.append(norm)
                yield norm

        for i, doc in enumerate(analyse_docs(self.nlp, feed(), batch_size=batch_size)):
            req, norm = reqs[i], norms[i]
            reqs[i] = norms[i] = None  # type: ignore[call-overload]  # free as we go
            keep = [(s.start, s.end) for s in norm.segments if s.kind in MODEL_SEGMENTS]
            tokens = []
            for tok in doc:
                if tok.is_punct or tok.is_space:
                    continue
                idx = tok.idx
                if any(a <= idx < b for a, b in keep):
                    tokens.append(tok.lemma_)
            yield Analysed(req, norm, list(doc._.intake_hits), tokens)


@lru_cache(maxsize=4)
def shared_analyser(rules_dir: str | None = None) -> Analyser:
    """One analyser per rules folder, built on first use (building takes ~1 s)."""
    return Analyser(rules_dir)
