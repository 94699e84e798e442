"""Second stage: the request's main language (SPEC §9).

The ``language`` input field wins when given. Otherwise the language is detected from
the customer's own words, the subject and prose segments (pasted logs, code blocks and
quoted replies are other segments), in this order:

1. the packs' ``function_words``: when one language's small words make up a clear share
   of the text and lead every other's threefold, it is that language (most requests);
2. a fair share of Cyrillic letters is Russian (the English around it is pasted), or
   Ukrainian, Belarusian, Kazakh when their own letters appear;
3. otherwise lingua (``lingua-language-detector``, offline: its models ship in the wheel),
   in its low-accuracy mode, among the seven languages of SPEC §9 and any a pack adds,
   on the first :data:`MAX_DETECT_CHARS` characters of the prose less inline code,
   addresses, paths, quoted strings ("the error says 'Access denied'") and pasted error
   or log lines; where it hesitates, function words decide.

On the natively written requests of ``data/parts`` this is right for 99% of them. The
high-accuracy mode was no more accurate there and needs 220 MB more; twenty candidate
languages halve lingua's speed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Iterable

from .normalise import NormalisedRequest

#: The languages of SPEC §9: detected whether or not the rules have a pack for them (one
#: without a pack is named in the output and sent to review with an English reply).
SPEC_LANGUAGES = ("en", "ru", "de", "es", "pt", "pl", "fr")
#: Cyrillic letters that Russian does not use, and the language each one gives away.
_OWN_LETTERS = (("uk", frozenset("іїєґ")), ("be", frozenset("ў")), ("kk", frozenset("әғқңөұүһ")))
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_NOT_RUSSIAN_LETTER = re.compile("[" + "".join(sorted(set().union(*(own for _, own in _OWN_LETTERS)))) + "]",
                                 re.IGNORECASE)
_NON_ASCII_LETTER = re.compile(r"[^\W\d_a-zA-Z]")
#: Characters of prose the detector reads at most: more does not change its answer.
MAX_DETECT_CHARS = 300
#: lingua hesitates when another language's confidence is at least this share of the top
#: one's (its low-accuracy mode takes some short English sentences for German)
UNSURE = 0.4
_WORD = re.compile(r"\w+")
#: Function words decide alone when at least this many, this share of the prose's words,
#: and three times as many as any other language's
MIN_FUNCTION_WORDS = 3
FUNCTION_WORD_SHARE = 0.1
#: Fewer letters than this and the text says too little: the default language is used.
MIN_LETTERS = 3

#: What is not the customer's own prose, each pattern with a character it cannot match
#: without (a text without the character skips the pattern: most have none of them)
_NOT_PROSE = tuple((trigger, re.compile(pattern, re.MULTILINE)) for trigger, pattern in (
    ("`", r"`[^`\n]*`"),                                        # inline code
    ("://", r"\b(?:https?|ftp)://\S+"), ("www.", r"\bwww\.\S+"),  # addresses
    ("@", r"[\w.+-]+@[\w-]+\.[\w.-]+"),                         # e-mail addresses
    ("/", r"(?<!\w)(?:/[\w.~-]+){2,}/?"), (":\\", r"\b[A-Za-z]:\\\S+"),  # paths
    # quoted strings: "…", «…», „…“, and '…' where the quote marks stand apart from words
    # (so "What's … we're" stays)
    ('"', r'"[^"\n]{1,200}"'), ("'", r"(?<!\w)'[^'\n]{3,200}'(?!\w)"), ("«", r"«[^»\n]{1,200}»"),
    ("„", r"„[^“”\n]{1,200}[“”]"),
    # pasted error and log lines: they start with the error's own words or a time stamp
    ("", r"^[ \t>]*(?:\[[^\]\n]{1,40}\][ \t]*)?(?:PHP )?(?:Fatal error|Parse error|Warning|Notice|Deprecated|"
         r"Error|ERROR|Exception|Uncaught|Traceback|Stack trace|SQLSTATE|FATAL|WARN|CRIT|MySQL query error)\b.*$"
         r"|^\s*(?:\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d|\d\d:\d\d:\d\d)\S*.*$"),
))


def _cyrillic_letters(text: str) -> int:
    """How many characters of ``text`` are in the Cyrillic block (U+0400-U+04FF): in UTF-8
    exactly those start with a byte 0xD0-0xD3, which no other character's bytes are, so
    counting the bytes is ``len(_CYRILLIC.findall(text))`` in a tenth of the time."""
    data = text.encode("utf-8", "surrogatepass")
    return data.count(b"\xd0") + data.count(b"\xd1") + data.count(b"\xd2") + data.count(b"\xd3")


@dataclass(frozen=True)
class LanguageOf:
    """A request's language, where it came from, and whether the rules have a pack for it."""

    code: str
    source: str  # "given", "detected" or "default" (too little prose to tell)
    supported: bool
    #: the language the rules read the request in when it is not ``code``: a message forwarded
    #: in another supported language under a short cover note ("FYI, see below")
    reads: str | None = None


#: Letters a cover note above a forwarded message needs to tell the language by itself
MIN_COVER_LETTERS = 20


def prose_for_detection(norm: NormalisedRequest) -> str:
    """What the detector reads: the customer's own sentences (see the module docstring)."""
    text = norm.parts("subject", "prose") if norm.segments else norm.text
    if norm.segments and any(s.kind == "forwarded" for s in norm.segments) and sum(
            map(str.isalpha, text)) < MIN_COVER_LETTERS:
        # a cover note too short to tell ("FYI, see below"): the message it forwards is the request
        text = norm.parts("subject", "prose", "forwarded")
    return _cleaned_prose(text)


def _cleaned_prose(text: str) -> str:
    """``text`` without pasted logs, code, quoted error messages, addresses and paths, unless
    that leaves nothing."""
    cleaned = text[:MAX_DETECT_CHARS * 4]
    for trigger, pattern in _NOT_PROSE:
        if trigger in cleaned:
            cleaned = pattern.sub(" ", cleaned)
    if sum(map(str.isalpha, cleaned)) < MIN_LETTERS:  # nothing but code and quotes: read it all
        cleaned = text
    return " ".join(cleaned.split())[:MAX_DETECT_CHARS]


class LanguageDetector:
    """Tells the language of requests among ``supported`` and :data:`SPEC_LANGUAGES`."""

    def __init__(self, supported: Iterable[str], default: str = "en",
                 function_words: dict[str, Iterable[str]] | None = None) -> None:
        self.supported = frozenset(supported)
        self.default = default
        codes = tuple(sorted(self.supported | set(SPEC_LANGUAGES)))
        self._detector = _lingua_detector(codes)
        self.function_words = {code: frozenset(words) for code, words in (function_words or {}).items() if words}
        self.ascii_only = {code for code, words in self.function_words.items() if all(w.isascii() for w in words)}
        #: function word -> the languages it is one of (one pass over a text counts them all)
        self._languages_of_word: dict[str, list[str]] = {}
        for code, words in self.function_words.items():
            for word in words:
                self._languages_of_word.setdefault(word, []).append(code)

    def language_of(self, norm: NormalisedRequest, given: str | None = None) -> LanguageOf:
        """The given language, else the detected one, else the default; and, for a message
        forwarded under a short cover note, the language it is written in, when another."""
        found = self._language_of(norm, given)
        if norm.segments and any(s.kind == "forwarded" for s in norm.segments):
            forwarded = _cleaned_prose(norm.parts("forwarded"))
            reads = self._code_of(forwarded) if sum(map(str.isalpha, forwarded)) >= MIN_COVER_LETTERS else None
            if reads and reads != found.code and reads in self.supported:
                return replace(found, reads=reads)
        return found

    def _language_of(self, norm: NormalisedRequest, given: str | None = None) -> LanguageOf:
        if given:
            return LanguageOf(given, "given", given in self.supported)
        # most requests are told by their small words before any cleaning: a pasted English
        # error in a German request leaves the German ones short of a clear lead, and then
        # the cleaned prose decides
        raw = " ".join((norm.parts("subject", "prose") if norm.segments else norm.text)[:MAX_DETECT_CHARS].split())
        if not _CYRILLIC.search(raw):
            code = self._by_function_words(raw, _WORD.findall(raw.lower()))
            if code is not None:
                return LanguageOf(code, "detected", code in self.supported)
        code = self._code_of(prose_for_detection(norm))
        if code is None:
            return LanguageOf(self.default, "default", self.default in self.supported)
        return LanguageOf(code, "detected", code in self.supported)

    def _code_of(self, prose: str) -> str | None:
        """The language of cleaned prose, or None when there is too little to tell."""
        cyrillic = _cyrillic_letters(prose)
        letters = 0 if cyrillic >= 40 else sum(map(str.isalpha, prose))  # 40 Cyrillic letters decide alone
        if cyrillic >= MIN_LETTERS and (cyrillic >= 40 or cyrillic >= 0.2 * letters):
            # whoever writes this much Cyrillic writes in it: the English around it is pasted
            code = "ru"
        else:
            code = self._detect(prose) if letters >= MIN_LETTERS and self._detector else None
            if code is None:
                return None
        if code == "ru" and _NOT_RUSSIAN_LETTER.search(prose):
            seen = set(prose.lower())
            code = next((lang for lang, own in _OWN_LETTERS if seen & own), code)
        return code

    def _by_function_words(self, prose: str, words: list[str]) -> str | None:
        """The language whose function words make up a clear share of ``words``, if one does."""
        if not self.function_words or not words:
            return None
        per_language = dict.fromkeys(self.function_words, 0)
        languages_of = self._languages_of_word
        for word in words:
            for code in languages_of.get(word, ()):
                per_language[code] += 1
        counts = sorted(((n, code) for code, n in per_language.items()), reverse=True)
        top, code = counts[0]
        second = counts[1][0] if len(counts) > 1 else 0
        # a language written in plain ASCII is not told by its small words from prose with
        # letters it does not have ("Olá", "Dzień"): a language without a pack may be speaking
        foreign = code in self.ascii_only and not prose.isascii() and _NON_ASCII_LETTER.search(prose) is not None
        if top >= MIN_FUNCTION_WORDS and top >= FUNCTION_WORD_SHARE * len(words) and second * 3 <= top and not foreign:
            return code
        return None

    def _detect(self, prose: str) -> str | None:
        """The language whose function words make up a fair share of the prose, when one
        clearly does (most requests: no need to ask lingua); else lingua's answer, and when
        lingua hesitates between languages whose packs list function words, the one whose
        function words the prose uses most."""
        words = _WORD.findall(prose.lower())
        code = self._by_function_words(prose, words)
        if code is not None:
            return code
        ranked = [(c.language.iso_code_639_1.name.lower(), c.value)
                  for c in self._detector.compute_language_confidence_values(prose)[:3]]
        if not ranked or ranked[0][1] == 0:
            return None
        close = [code for code, value in ranked if value >= UNSURE * ranked[0][1] and code in self.function_words]
        if len(close) > 1:
            counts = {code: sum(w in self.function_words[code] for w in words) for code in close}
            best = max(counts.values())
            if best and list(counts.values()).count(best) == 1:
                return max(counts, key=counts.__getitem__)
        return ranked[0][0]


@lru_cache(maxsize=8)
def _lingua_detector(codes: tuple[str, ...]):
    """A lingua detector for the languages of ``codes`` that lingua knows (built once)."""
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    languages = []
    for code in codes:
        try:
            languages.append(Language.from_iso_code_639_1(IsoCode639_1.from_str(code)))
        except ValueError:  # a language lingua does not know (a toy one): only given, never detected
            continue
    if len(languages) < 2:
        return None
    return (LanguageDetectorBuilder.from_languages(*languages).with_low_accuracy_mode()
            .with_preloaded_language_models().build())
