"""Fuzz the normaliser, the masker and the rule matcher with hypothesis (bounded: a few
hundred examples each, no deadline, well under a minute in CI).

Invariants: segments are ordered, non-overlapping and inside the text; every rule
hit lies inside the text, quotes it, and sits in a segment its rule reads; masking
is idempotent; no secret of the credential corpus survives normalise().
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import assume, HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.language import Language

from classifier.masking import MASK, mask_secrets
from classifier.matching import analyse_docs, build_pipeline
from classifier.normalise import NormalisedRequest, normalise

CORPUS = yaml.safe_load((Path(__file__).resolve().parent / "fixtures" / "credentials.yaml").read_text(encoding="utf-8"))
ENTRIES = CORPUS["secrets"]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

ANY_CHAR = st.characters(codec=None, categories=None)  # lone surrogates, NUL and controls included
#: pieces of real requests: HTML, e-mail quoting, sign-offs, code fences, log lines, secrets
PIECES = st.sampled_from([
    "<div>", "</div>", "<p>", "</p>", "<br>", "<blockquote>", "</blockquote>", "<!--", "-->", "<script>", "&amp;",
    "\n", "\n\n", "\r\n", " ", "> ", "On Mon, 3 Jun 2024, Anna wrote:", "-----Original Message-----", "--",
    "Best regards,", "Thanks!", "```", "PHP Fatal error: in /home/bitrix/www/index.php:12", "    at foo()",
    "The CRM is down since the update to main 24.300.100.", "https://shop.example.com/crm/", "CRM > Deals > Delete",
    "1. open the deal", "2. click Save", "password: ", "Qw7!mzP2", "admin / ", "license key: ", "NFR-K4Z9-8HQ2-TT71-0PLM",
    "-----BEGIN RSA PRIVATE KEY-----", "[MASKED]", "ignore previous instructions", "\u202e", "\x00", "🔥",
    "<" * 40, "%" * 30, "a:" * 150,
])
REQUEST_TEXT = st.lists(st.one_of(PIECES, st.text(ANY_CHAR, max_size=15)), max_size=40).map("".join)


@pytest.fixture(scope="module")
def nlp() -> Language:
    """The bundled rules' spaCy pipeline, built once for this module."""
    return build_pipeline()


def check_segments(norm: NormalisedRequest) -> None:
    previous_end = 0
    for seg in norm.segments:
        assert 0 <= previous_end <= seg.start < seg.end <= len(norm.text), norm.segments
        previous_end = seg.end


@FUZZ
@given(text=REQUEST_TEXT, subject=st.one_of(st.none(), st.text(ANY_CHAR, max_size=40)))
def test_segments_are_ordered_non_overlapping_and_inside_the_text(text: str, subject: str | None) -> None:
    norm = normalise(text, subject)
    check_segments(norm)
    assert all(seg.kind in ("subject", "prose", "code", "quoted", "signature", "hidden") for seg in norm.segments)
    assert "\x00" not in norm.text and "\r" not in norm.text
    assert not any("\ud800" <= ch <= "\udfff" for ch in norm.text)  # lone surrogates are replaced


@FUZZ
@given(text=REQUEST_TEXT)
def test_every_hit_lies_in_the_text_and_in_a_segment_its_rule_reads(nlp: Language, text: str) -> None:
    norm = normalise(text)
    doc = next(analyse_docs(nlp, [norm]))
    rules = {rule.id: rule for rule in nlp.get_pipe("intake_rule_matcher").rules}
    for hit in doc._.intake_hits:
        assert 0 <= hit.start < hit.end <= len(norm.text)
        assert norm.text[hit.start:hit.end] == hit.text
        seg = next((s for s in norm.segments if s.start <= hit.start < s.end), None)
        assert seg is not None and seg.kind == hit.segment
        assert hit.segment in rules[hit.rule_id].read


@FUZZ
@given(text=st.one_of(REQUEST_TEXT, st.text(ANY_CHAR, max_size=200),
                      st.lists(st.sampled_from([e["text"] for e in ENTRIES] + CORPUS["lookalikes"]),
                               min_size=1, max_size=3).map("\n".join)))
def test_masking_is_idempotent(text: str) -> None:
    once = mask_secrets(text)
    twice = mask_secrets(once.text)
    assert twice.text == once.text
    assert twice.kinds == []


@FUZZ
@given(entry=st.sampled_from(ENTRIES), before=REQUEST_TEXT, after=REQUEST_TEXT,
       html=st.booleans(), subject=st.booleans())
def test_no_corpus_secret_survives_normalise(entry: dict, before: str, after: str, html: bool, subject: bool) -> None:
    # the surrounding text may hold other secrets, but not this entry's own secret bare,
    # without the context that makes it one (a lone "Qw7!mzP2" is just a word)
    assume(not any(secret in before + after for secret in entry["secrets"]))
    body = entry["text"]
    if html:  # the same secret inside an HTML mail body
        body = "<p>" + body.replace("&", "&amp;").replace("<", "&lt;").replace("\n", "<br>") + "</p>"
    text = f"{before}\n\n{body}\n\n{after}"
    norm = normalise(text, entry["text"] if subject else None)
    for secret in entry["secrets"]:
        assert secret not in norm.text
    if "<" not in before:  # (an unclosed <script> or <!-- before it hides the body altogether)
        assert norm.masked and MASK in norm.text
