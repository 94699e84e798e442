"""Load and validate the YAML rules in ``rules/``.

Rules are data: each is a mapping with a stable ``id`` that every result cites,
written over named concepts (``rules/vocabulary/``: words and phrases per language).
The YAML is read with a safe loader that refuses aliases (no "billion laughs") and
remembers line numbers; each rule and concept is checked against a pydantic schema,
against the label contract in :mod:`.spec`, and for concepts that are used but not
defined; every regex must compile for the ``regex`` module and for Hyperscan. Every
problem is one line that names the file, the line, the rule id and what is allowed.
"""
from __future__ import annotations

import re
import stat
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import spec
from .errors import Errors, RulesError
from .locations import bundled, rules_source

#: Largest rules file accepted; real ones are a few KB.
MAX_RULES_FILE_BYTES = 2 * 1024 * 1024
#: The bundled rules (package data when installed, ``rules/`` in a checkout).
DEFAULT_RULES_DIR = bundled("rules")

KINDS = ("clause", "severity", "info", "delay", "flag")
SEGMENTS = ("subject", "prose", "heading", "code", "quoted", "signature", "hidden", "forwarded")
#: A forwarded message under a short cover note is the request itself (``forwarded``): a rule
#: that reads the customer's prose reads it too.
READ_WITH_PROSE = ("forwarded",)
#: What each kind of rule reads by default. Clause rules ignore pasted logs, quoted
#: replies and headings, so a stack trace mentioning ``mysqli`` is not a database
#: question and an issue template's "Expected behavior" is not an error report.
DEFAULT_SEGMENTS: dict[str, tuple[str, ...]] = {
    "clause": ("subject", "prose"),
    "severity": ("subject", "prose", "heading"),
    "info": ("subject", "prose", "heading", "code", "signature"),
    "delay": ("subject", "prose", "heading", "signature"),
    "flag": ("subject", "prose", "heading", "code", "signature"),
}
#: Labels a rule of each kind may give.
KIND_LABELS: dict[str, tuple[str, ...]] = {
    "clause": tuple(spec.CLAUSES),
    "severity": spec.SEVERITIES,
    # info rules say an item is present (``url`` …); ``not_<item>`` marks look-alikes
    # that never count (a vendor address, a PHP version, "business process") and
    # cancels an overlapping hit of the item; ``cloud``/``self_hosted`` say which
    # product the text is about; ``server_access`` marks server-side details
    # (php.ini, /bitrix/ paths, SSH); ``up_to_date_claim`` a claim to be up to date.
    "info": ("url", "version", "edition", "steps_to_reproduce", "not_url", "not_version",
             "not_edition", "cloud", "self_hosted", "server_access", "up_to_date_claim"),
    "delay": spec.DELAY_REASONS,
    "flag": spec.FLAGS,
}
RULE_KEYS = {"id", "kind", "label", "category", "scope", "sla", "description", "weight",
             "match", "unless", "unless_within", "read", "examples"}
REQUIRED_KEYS = ("id", "kind", "match", "examples")
ID_RE = re.compile(r"^[A-Za-z0-9_.#:-]+$")
#: A concept's name: upper-case words joined by ``_`` (INSTALL, BITRIX_VM). Anything else
#: in a rule's list of terms is a word or phrase written out.
CONCEPT_RE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")
#: Language keys a concept's words may be listed under (ISO 639-1, two letters).
LANGUAGE_RE = re.compile(r"^[a-z]{2}$")
#: A concept's words that are the same in every language (software and product names)
ANY_LANGUAGE = "any"
#: Where a language's lemmas come from (see :class:`LanguagePack`).
LEMMA_SOURCE_RE = re.compile(r"^(?:lookup|simplemma):[a-z]{2,3}$")
#: Words between the first and the last term of a ``near``/``then`` condition, by default.
DEFAULT_WITHIN = 8
#: How close (in words, either side of the match) an ``unless`` concept vetoes it, by default.
DEFAULT_UNLESS_WITHIN = 5
CONDITION_FORMS = ("concept", "phrase", "near", "then", "regex")
#: The keys of ``segments:`` (in rules/segments.yaml and in a language pack): the words and
#: phrases by which :mod:`.normalise` tells the parts of a request apart. The phrase keys take
#: the placeholders ``…`` (any text; ``...`` works too) and ``#`` (a digit); the word keys take
#: words as written.
SEGMENT_PHRASE_KEYS = ("reply_headers", "sign_offs", "disclaimers")
SEGMENT_WORD_KEYS = ("message_separators", "forwarded_separators", "forwarded_subject_prefixes", "sender_fields",
                     "more_to_say", "disclaimer_words", "support_speakers")
#: Longest entry of a ``segments:`` list (real ones are a few words).
MAX_SEGMENT_ENTRY_CHARS = 100
#: Most characters a ``…`` may stand for (an entry's ``any_text``): the line patterns stay bounded.
MAX_ANY_TEXT_CHARS = 200
#: ``…`` (or three dots), the placeholder for any text in a phrase of SEGMENT_PHRASE_KEYS
ANY_TEXT_RE = re.compile(r"…|\.\.\.")


class _Condition(BaseModel):
    """The schema of one way a rule can match (exactly one form)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    concept: str | None = None
    phrase: str | None = Field(default=None, min_length=1)
    near: list[str] | None = Field(default=None, min_length=2)
    then: list[str] | None = Field(default=None, min_length=2)
    regex: str | None = Field(default=None, min_length=1)
    within: int | None = Field(default=None, ge=1, le=60)
    case_sensitive: bool = False
    in_order: bool = False


class _Examples(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    match: list[str] = Field(min_length=1)
    no_match: list[str] = []


class _RuleSchema(BaseModel):
    """The schema of one rule; SPEC labels are checked after it."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id: str = Field(pattern=ID_RE.pattern)
    kind: str
    label: str | None = None
    category: str | None = None
    scope: str | None = None
    sla: str | None = None
    description: str | None = None
    weight: float = Field(default=1.0, gt=0, le=1)
    match: list[_Condition] = Field(min_length=1)
    unless: list[str] = []
    unless_within: int = Field(default=DEFAULT_UNLESS_WITHIN, ge=0, le=60)
    read: list[str] | None = Field(default=None, min_length=1)
    examples: _Examples


class _ConceptSchema(BaseModel):
    """The schema of one concept: words per language, other concepts it includes, regexes."""

    model_config = ConfigDict(extra="allow", strict=True)
    description: str | None = None
    include: list[str] = []
    regex: list[str] = []


class _PhraseSchema(BaseModel):
    """A phrase whose ``…`` stands for another number of characters than its key's default."""

    model_config = ConfigDict(extra="forbid", strict=True)
    phrase: str
    any_text: int = Field(ge=1, le=MAX_ANY_TEXT_CHARS)


class _SegmentsSchema(BaseModel):
    """The schema of a ``segments:`` mapping: a list of entries per key (see SEGMENT_*_KEYS)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    reply_headers: list[str | _PhraseSchema] = []
    message_separators: list[str] = []
    forwarded_separators: list[str] = []
    forwarded_subject_prefixes: list[str] = []
    sender_fields: list[str] = []
    sign_offs: list[str | _PhraseSchema] = []
    more_to_say: list[str] = []
    disclaimers: list[str | _PhraseSchema] = []
    disclaimer_words: list[str] = []
    support_speakers: list[str] = []


@dataclass(frozen=True)
class Phrase:
    """A phrase of ``segments:`` (reply_headers, sign_offs, disclaimers): words, ``…`` for any
    text and ``#`` for a digit."""

    text: str
    #: how many characters ``…`` stands for at most; None: its key's default (see normalise.py)
    any_text: int | None = None


@dataclass(frozen=True)
class SegmentWords:
    """The words and phrases that mark the parts of a request (``segments:`` in
    rules/segments.yaml and in the language packs, all languages together: a request
    quotes a reply in another language as often as not). :mod:`.normalise` puts them
    into its line patterns; docs/rules.md tells each key's form."""

    #: the line above a quoted e-mail: "On … wrote:"
    reply_headers: tuple[Phrase, ...] = ()
    #: the title of a separator line between dashes: "Original Message"
    message_separators: tuple[str, ...] = ()
    #: the title of the line above a forwarded message: "Forwarded message"
    forwarded_separators: tuple[str, ...] = ()
    #: what an e-mail program puts before the subject of a forwarded message: "Fwd", "FW"
    forwarded_subject_prefixes: tuple[str, ...] = ()
    #: the header field naming the sender of a quoted e-mail: "From"
    sender_fields: tuple[str, ...] = ()
    #: a line that ends the message: "thanks", "best regards…"
    sign_offs: tuple[Phrase, ...] = ()
    #: the start of a line after a sign-off that adds to the message: "p.s", "one more"
    more_to_say: tuple[str, ...] = ()
    #: the first line of a disclaimer: "this e-mail … confidential"
    disclaimers: tuple[Phrase, ...] = ()
    #: words that make any line after a sign-off part of a disclaimer: "intended recipient"
    disclaimer_words: tuple[str, ...] = ()
    #: the support side's name in a chat transcript: "agent", "operator"
    support_speakers: tuple[str, ...] = ()

    def merged(self, other: "SegmentWords") -> "SegmentWords":
        """These words and ``other``'s, each entry once (compared case aside), in order."""
        def union(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
            first: dict[str, Any] = {}
            for entry in a + b:
                first.setdefault((entry.text if isinstance(entry, Phrase) else entry).casefold(), entry)
            return tuple(first.values())
        return SegmentWords(**{key: union(getattr(self, key), getattr(other, key))
                               for key in SEGMENT_PHRASE_KEYS + SEGMENT_WORD_KEYS})


@dataclass(frozen=True)
class Condition:
    """One way a rule can match: a concept, a phrase, terms ``near`` each other or in
    order (``then``) within some words, or a regex."""

    form: str  # one of CONDITION_FORMS
    terms: tuple[str, ...] = ()  # concept names and phrases (not for regex)
    within: int = DEFAULT_WITHIN
    regex: str = ""
    case_sensitive: bool = False
    #: a ``then`` whose order is its meaning (steps told in order): kept in order even in a
    #: language whose pack says ``word_order: free``
    in_order: bool = False


@dataclass(frozen=True)
class Concept:
    """A named list of words and phrases, per language, and regexes for any language."""

    name: str
    words: dict[str, tuple[str, ...]]
    regexes: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    description: str | None = None
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class Rule:
    """A validated rule. ``label`` is what a hit means (a clause id, severity …)."""

    id: str
    kind: str
    label: str
    match: tuple[Condition, ...]
    unless: tuple[str, ...] = ()
    unless_within: int = DEFAULT_UNLESS_WITHIN
    read: tuple[str, ...] = ()
    weight: float = 1.0
    category: str | None = None
    scope: str | None = None
    sla: str | None = None
    description: str | None = None
    examples_match: tuple[str, ...] = ()
    examples_no_match: tuple[str, ...] = ()
    file: str = ""
    line: int = 0

    def terms(self) -> set[str]:
        """Every concept name and phrase the rule uses (``unless`` included)."""
        return {t for c in self.match for t in c.terms} | set(self.unless)


class _PackExamples(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    match: list[str] = []
    no_match: list[str] = []


class _PackSchema(BaseModel):
    """The schema of one language pack file (``rules/languages/<code>/*.yaml``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    language: str = Field(pattern=LANGUAGE_RE.pattern)
    name: str | None = None
    tokenizer: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")
    lemmas: list[str] | None = None
    function_words: list[str] | None = None
    false_friends: list[str] | None = None
    word_order: Literal["fixed", "free"] | None = None
    words: dict[str, list[str]] = {}
    regex: dict[str, list[str]] = {}
    examples: dict[str, _PackExamples] = {}
    templates: dict[str, Any] = {}
    sla: dict[str, str] = {}
    segments: Any = None  # checked by parse_segments, whose messages say more


@dataclass
class LanguagePack:
    """What one language adds to the rules: how its text is read (the spaCy tokenizer and
    lemma lookup tables), its words for the concepts, regexes that only hold in it, the
    rules' examples in it and its reply templates. English needs no pack: its words are
    the concepts' ``en:`` lists and its examples sit in the rules."""

    code: str
    name: str = ""
    #: spaCy language whose blank tokenizer splits the text (``spacy.blank(tokenizer)``)
    tokenizer: str = ""
    #: where lemmas come from, tried in order: ``lookup:<lang>`` (the ``lemma_lookup`` table
    #: of ``spacy-lookups-data``) or ``simplemma:<lang>``; a word none knows is its own lemma
    lemmas: tuple[str, ...] = ()
    #: the language's commonest small words, which tell it from another when the detector hesitates
    function_words: tuple[str, ...] = ()
    #: English (and ``any:``) words that are ordinary words of this language with another
    #: meaning (Polish "do", Portuguese "pro", German "die"): they do not count in it
    false_friends: tuple[str, ...] = ()
    #: ``free``: the rules' ``then`` conditions are read as ``near`` (terms in any order)
    word_order: str = "fixed"
    words: dict[str, tuple[str, ...]] = field(default_factory=dict)
    regexes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: rule id -> (match, no_match) examples in this language
    examples: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    templates: dict[str, Any] = field(default_factory=dict)
    #: clause id -> the SLA text in this language, as replies quote it (``{clause_text}``)
    sla: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


#: English as it is when no ``rules/languages/en/`` says otherwise.
ENGLISH = LanguagePack("en", "English", "en", ("lookup:en",))


@dataclass
class RuleSet:
    """Every rule and reply template loaded from one rules folder."""

    rules: list[Rule]
    concepts: dict[str, Concept] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    digest: str = ""
    #: of the vocabulary files alone: what a model's concept features depend on
    vocabulary_digest: str = ""
    #: language code -> its pack; the supported languages (English always among them)
    languages: dict[str, LanguagePack] = field(default_factory=lambda: {"en": ENGLISH})
    #: the words that mark the parts of a request, of every file and pack (see :class:`SegmentWords`)
    segment_words: SegmentWords = field(default_factory=SegmentWords)

    def examples_in(self, language: str) -> list[tuple[Rule, tuple[str, ...], tuple[str, ...]]]:
        """Each rule with its (match, no_match) examples in ``language``."""
        if language == "en":
            return [(r, r.examples_match, r.examples_no_match) for r in self.rules]
        pack = self.languages[language]
        return [(r, *pack.examples.get(r.id, ((), ()))) for r in self.rules]

    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}

    def of_kind(self, kind: str) -> list[Rule]:
        return [r for r in self.rules if r.kind == kind]


#: libyaml's parser when PyYAML has it (about ten times faster on the rules folder)
_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Parser):  # type: ignore[misc, valid-type]
    """Safe loader that records each mapping's line (aliases are refused before it runs)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen = set()
        for key_node, _ in node.value:  # a repeated key would silently drop the first one's words
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        mapping = super().construct_mapping(node, deep=True)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping


def _first_alias_line(text: str) -> int | None:
    """Line of the first YAML alias, found by the scanner before anything is built
    (so a "billion laughs" file is refused without expanding it)."""
    if "*" not in text:
        return None
    scanner = yaml.CBaseLoader(text) if hasattr(yaml, "CBaseLoader") else yaml.BaseLoader(text)
    try:
        while scanner.check_token():
            token = scanner.get_token()
            if isinstance(token, yaml.AliasToken):
                return token.start_mark.line + 1
    except yaml.YAMLError:
        return None  # the parse below reports it, with its line
    finally:
        scanner.dispose()
    return None


# YAML 1.1 reads on/off/yes/no as booleans, which silently breaks word lists such as
# [self, on]; in rules files only true/false are booleans.
_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def read_yaml(path: Path) -> Any:
    """Read one YAML file safely, with size limit and line-numbered errors."""
    size = path.stat().st_size
    if size > MAX_RULES_FILE_BYTES:
        raise RulesError(Errors.E012.format(file=path, size=size, limit=MAX_RULES_FILE_BYTES))
    text = path.read_text(encoding="utf-8")
    alias = _first_alias_line(text)
    if alias is not None:
        raise RulesError(Errors.E013.format(file=path, line=alias))
    loader = _Loader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise RulesError(Errors.E003.format(file=path, line=line, problem=exc.problem or exc)) from None
    except yaml.YAMLError as exc:
        raise RulesError(Errors.E003.format(file=path, line=0, problem=exc)) from None
    finally:
        loader.dispose()


def _fail(msg: str, **kw: Any) -> RulesError:
    return RulesError(msg.format(**kw))


def _schema_error(exc: ValidationError, where: dict[str, Any]) -> RulesError:
    """The first problem pydantic found, in the words of our other rules errors."""
    err = exc.errors()[0]
    field_ = ".".join(str(p) for p in err["loc"]) or "rule"
    if err["type"] == "extra_forbidden":
        return _fail(Errors.E004, key=field_, allowed=", ".join(sorted(RULE_KEYS)), **where)
    if err["type"] == "missing":
        return _fail(Errors.E005, key=field_, **where)
    got = err.get("input")
    got = type(got).__name__ if isinstance(got, (dict, list)) else repr(got)
    return _fail(Errors.E011, field=field_, expected=err["msg"].removeprefix("Input should be ").lower(),
                 got=got, **where)


def check_regex(pattern: str, case_sensitive: bool, where: dict[str, Any], index: int) -> None:
    """Refuse a regex that does not compile, for the ``regex`` module or for Hyperscan
    (which prefilters every text for all regexes at once)."""
    from .prefilter import hyperscan_error

    try:
        regex.compile(pattern)
    except regex.error as exc:
        raise _fail(Errors.E009, index=index, detail=exc, **where) from None
    problem = hyperscan_error(pattern, case_sensitive)
    if problem:
        raise _fail(Errors.E009, index=index, detail=f"Hyperscan cannot compile it: {problem}", **where)


def _condition(raw: _Condition, where: dict[str, Any], index: int) -> Condition:
    forms = [f for f in CONDITION_FORMS if getattr(raw, f) is not None]
    if len(forms) != 1:
        raise _fail(Errors.E011, field=f"match[{index}]", expected="exactly one of " + ", ".join(CONDITION_FORMS),
                    got=", ".join(forms) or "none", **where)
    form = forms[0]
    if raw.within is not None and form not in ("near", "then"):
        raise _fail(Errors.E011, field=f"match[{index}].within", expected="used only with near or then",
                    got=form, **where)
    if raw.in_order and form != "then":
        raise _fail(Errors.E011, field=f"match[{index}].in_order", expected="used only with then", got=form, **where)
    if raw.case_sensitive and form != "regex":
        raise _fail(Errors.E011, field=f"match[{index}].case_sensitive", expected="used only with a regex",
                    got=form, **where)
    if form == "regex":
        check_regex(raw.regex or "", raw.case_sensitive, where, index)
        return Condition("regex", regex=raw.regex or "", case_sensitive=raw.case_sensitive)
    value = getattr(raw, form)
    terms = tuple(value) if isinstance(value, list) else (value,)
    if form == "concept" and not CONCEPT_RE.match(terms[0]):
        raise _fail(Errors.E011, field=f"match[{index}].concept", expected="a concept name such as INSTALL",
                    got=repr(terms[0]), **where)
    for term in terms:
        if not term.strip():
            raise _fail(Errors.E011, field=f"match[{index}].{form}", expected="non-empty terms", got="''", **where)
    return Condition(form, terms, raw.within or DEFAULT_WITHIN, in_order=raw.in_order)


def parse_rule(raw: Any, file: Path, seen: dict[str, str]) -> Rule:
    """Validate one rule mapping; ``seen`` maps ids to where they were first defined."""
    line = raw.get("__line__", 0) if isinstance(raw, dict) else 0
    rule_id = raw.get("id", "?") if isinstance(raw, dict) else "?"
    where = {"file": file, "line": line, "rule_id": rule_id}
    if not isinstance(raw, dict):
        raise _fail(Errors.E011, field="rule", expected="a mapping", got=type(raw).__name__, **where)
    for key in REQUIRED_KEYS:
        if key not in raw:
            raise _fail(Errors.E005, key=key, **where)
    try:
        parsed = _RuleSchema.model_validate(_strip_lines(raw))
    except ValidationError as exc:
        raise _schema_error(exc, where) from None
    if rule_id in seen:
        raise _fail(Errors.E006, first=seen[rule_id], **where)
    kind = parsed.kind
    if kind not in KINDS:
        raise _fail(Errors.E007, field="kind", value=kind, allowed=", ".join(KINDS), **where)
    label = parsed.label or (rule_id.split("#")[0] if kind == "clause" else None)
    if label is None:
        raise _fail(Errors.E005, key="label", **where)
    if label not in KIND_LABELS[kind]:
        raise _fail(Errors.E007, field="label", value=label, allowed=", ".join(KIND_LABELS[kind]), **where)
    category, scope = parsed.category, parsed.scope
    if kind == "clause":
        for key in ("category", "scope", "sla"):
            if getattr(parsed, key) is None:
                raise _fail(Errors.E005, key=key, **where)
        if category not in spec.CATEGORIES:
            raise _fail(Errors.E007, field="category", value=category, allowed=", ".join(spec.CATEGORIES), **where)
        expected_cat, expected_scope = spec.CLAUSES[label]
        if category != expected_cat:
            raise _fail(Errors.E015, value=category, clause=label, expected=expected_cat, **where)
        if scope != expected_scope:
            raise _fail(Errors.E007, field="scope", value=scope, allowed=expected_scope, **where)
    read = parsed.read or list(DEFAULT_SEGMENTS[kind])
    for seg in read:
        if seg not in SEGMENTS:
            raise _fail(Errors.E007, field="read", value=seg, allowed=", ".join(SEGMENTS), **where)
    if "prose" in read:
        read = list(dict.fromkeys([*read, *READ_WITH_PROSE]))
    match = tuple(_condition(c, where, i) for i, c in enumerate(parsed.match, 1))
    for term in parsed.unless:
        if not CONCEPT_RE.match(term) and not term.strip():
            raise _fail(Errors.E011, field="unless", expected="concept names or phrases", got=repr(term), **where)
    seen[rule_id] = f"{file}:{line}"
    return Rule(id=rule_id, kind=kind, label=label, match=match, unless=tuple(parsed.unless),
                unless_within=parsed.unless_within, read=tuple(read), weight=float(parsed.weight),
                category=category, scope=scope, sla=parsed.sla, description=parsed.description,
                examples_match=tuple(parsed.examples.match), examples_no_match=tuple(parsed.examples.no_match),
                file=str(file), line=line)


def parse_concepts(raw: Any, file: Path, concepts: dict[str, Concept]) -> None:
    """Validate a vocabulary file's ``concepts:`` mapping into ``concepts``."""
    for name, body in raw.items():
        if name == "__line__":
            continue
        line = body.get("__line__", raw.get("__line__", 0)) if isinstance(body, dict) else 0
        where = {"file": file, "line": line, "rule_id": f"concept {name}"}
        if not CONCEPT_RE.match(str(name)):
            raise _fail(Errors.E011, field="concept name", expected="upper-case words joined by _", got=repr(name),
                        **where)
        if name in concepts:
            first = concepts[name]
            raise _fail(Errors.E006, first=f"{first.file}:{first.line}", **where)
        if not isinstance(body, dict):
            raise _fail(Errors.E011, field=name, expected="a mapping of languages to word lists",
                        got=type(body).__name__, **where)
        try:
            parsed = _ConceptSchema.model_validate(_strip_lines(body))
        except ValidationError as exc:
            raise _schema_error(exc, where) from None
        words: dict[str, tuple[str, ...]] = {}
        for lang, entries in (parsed.model_extra or {}).items():
            if not LANGUAGE_RE.match(lang) and lang != ANY_LANGUAGE:
                raise _fail(Errors.E004, key=lang, allowed="description, include, regex, any and two-letter "
                            "language codes (en, ru, de …)", **where)
            if not isinstance(entries, list) or not all(isinstance(e, str) and e.strip() for e in entries):
                raise _fail(Errors.E011, field=f"{name}.{lang}", expected="a list of words and phrases",
                            got=repr(entries)[:60], **where)
            words[lang] = tuple(entries)
        for i, pattern in enumerate(parsed.regex, 1):
            check_regex(pattern, False, where, i)
        if not words and not parsed.regex and not parsed.include:
            raise _fail(Errors.E011, field=name, expected="words in some language, include or regex", got="none",
                        **where)
        concepts[name] = Concept(name, words, tuple(parsed.regex), tuple(parsed.include), parsed.description,
                                 str(file), line)


def _segment_entry_problem(key: str, entry: str) -> str | None:
    """What is wrong with one entry of ``segments.<key>``, or None."""
    bare = entry.strip()
    if not bare:
        return "is empty"
    if len(bare) > MAX_SEGMENT_ENTRY_CHARS:
        return f"is longer than {MAX_SEGMENT_ENTRY_CHARS} characters"
    if "\n" in bare:
        return "spans lines; each entry marks one line"
    if not re.search(r"[^\W\d_]", bare):
        return "has no word; write the words that mark the line"
    if key in SEGMENT_PHRASE_KEYS:
        if ANY_TEXT_RE.match(bare):
            return "starts with …, which would mark nearly any line; start with a word (or # for a digit)"
    elif ANY_TEXT_RE.search(bare):
        return (f"… stands for any text only in {', '.join(SEGMENT_PHRASE_KEYS)}; "
                f"{key} takes words as written")
    if key == "sender_fields" and bare.endswith(":"):
        return "write the field name without its colon ('From', not 'From:')"
    if key == "forwarded_subject_prefixes" and bare.endswith(":"):
        return "write the prefix without its colon ('Fwd', not 'Fwd:')"
    if key in ("message_separators", "forwarded_separators") and (bare.startswith("-") or bare.endswith("-")):
        return "write the title without the dashes around it"
    if key == "support_speakers" and ":" in bare:
        return "write the name without the colon that follows it"
    return None


def _line_of(file: Path, needle: str, after: int) -> int:
    """The first line from line ``after`` on of ``file`` that holds ``needle`` (``after`` if none)."""
    lines = file.read_text(encoding="utf-8").splitlines()
    return next((i for i, ln in enumerate(lines[max(after, 1) - 1:], max(after, 1)) if needle in ln), after)


def parse_segments(raw: Any, file: Path) -> SegmentWords:
    """Validate a ``segments:`` mapping (of rules/segments.yaml or a language pack file)."""
    line = raw.get("__line__", 0) if isinstance(raw, dict) else _line_of(file, "segments:", 1)
    where = {"file": file, "line": line}
    if not isinstance(raw, dict):
        raise _fail(Errors.E092, field="segments", problem=f"must be a mapping of keys to lists, got "
                    f"{type(raw).__name__}", **where)
    try:
        parsed = _SegmentsSchema.model_validate(_strip_lines(raw))
    except ValidationError as exc:
        # of a union's errors, the one about a {phrase:, any_text:} mapping says the most
        in_mapping = [e for e in exc.errors() if _PhraseSchema.__name__ in e["loc"][:-1]]
        err = (in_mapping or exc.errors())[0]
        key = str(err["loc"][0])
        where["line"] = _line_of(file, f"{key}:", line)
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
            allowed = ", ".join(SEGMENT_PHRASE_KEYS + SEGMENT_WORD_KEYS)
            raise _fail(Errors.E092, field=f"segments.{key}", problem=f"unknown key; allowed keys: {allowed}",
                        **where) from None
        field_ = f"segments.{key}" + (f"[{err['loc'][1]}]" if len(err["loc"]) > 1 else "")
        if key in SEGMENT_PHRASE_KEYS:
            expected = f"a list of phrases, each a text or {{phrase: <text with …>, any_text: 1 to {MAX_ANY_TEXT_CHARS}}}"
        else:
            expected = "a list of words"
        detail = f" ({err['loc'][-1]}: {err['msg']})" if in_mapping else ""
        raise _fail(Errors.E092, field=field_, problem=f"must be {expected}{detail}", **where) from None
    words: dict[str, tuple[Any, ...]] = {}
    for key in SEGMENT_PHRASE_KEYS + SEGMENT_WORD_KEYS:
        entries = []
        for i, entry in enumerate(getattr(parsed, key)):
            text = entry if isinstance(entry, str) else entry.phrase
            problem = _segment_entry_problem(key, text)
            if problem is None and isinstance(entry, _PhraseSchema) and not ANY_TEXT_RE.search(text):
                problem = "has any_text but no … for it to stand for"
            if problem:
                at = _line_of(file, text.strip(), line) if text.strip() else line
                raise _fail(Errors.E092, field=f"segments.{key}[{i}] {text!r}", problem=problem, file=file, line=at)
            if key in SEGMENT_PHRASE_KEYS:
                entries.append(Phrase(text.strip(), None if isinstance(entry, str) else entry.any_text))
            else:
                entries.append(text.strip())
        words[key] = tuple(entries)
    return SegmentWords(**words)


def parse_pack(raw: dict[str, Any], file: Path, packs: dict[str, LanguagePack]) -> bool:
    """Add one language pack file to ``packs``; True when it gives words or regexes."""
    language = raw.get("language")
    where = {"file": file, "line": raw.get("__line__", 1), "language": language}
    try:
        parsed = _PackSchema.model_validate(_strip_lines(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        at = ".".join(str(p) for p in err["loc"])
        raise _fail(Errors.E091, problem=f"{at}: {err['msg']}", **where) from None
    pack = packs.setdefault(parsed.language, LanguagePack(parsed.language))
    pack.files.append(str(file))
    for key in ("name", "tokenizer"):
        value = getattr(parsed, key)
        if value is not None:
            if getattr(pack, key):
                raise _fail(Errors.E091, problem=f"{key} is given twice (also in {pack.files[0]})", **where)
            setattr(pack, key, value)
    if parsed.lemmas is not None:
        bad = [x for x in parsed.lemmas if not LEMMA_SOURCE_RE.match(x)]
        if bad:
            raise _fail(Errors.E091, problem=f"lemmas: {bad[0]!r} is neither lookup:<lang> nor simplemma:<lang>",
                        **where)
        pack.lemmas = tuple(parsed.lemmas)
    if parsed.word_order is not None:
        pack.word_order = parsed.word_order
    if parsed.function_words is not None:
        pack.function_words = tuple(w.lower() for w in parsed.function_words)
    if parsed.false_friends is not None:
        pack.false_friends = pack.false_friends + tuple(w.lower() for w in parsed.false_friends)
    for name, entries in parsed.words.items():
        line = raw["words"].get("__line__", 0)
        if not all(e.strip() for e in entries):
            raise _fail(Errors.E011, field=f"words.{name}", expected="a list of words and phrases",
                        got=repr(entries)[:60], file=file, line=line, rule_id=f"language {parsed.language}")
        pack.words[name] = pack.words.get(name, ()) + tuple(entries)
    for name, patterns in parsed.regex.items():
        where_rx = {"file": file, "line": raw["regex"].get("__line__", 0), "rule_id": f"concept {name}"}
        for i, pattern in enumerate(patterns, 1):
            check_regex(pattern, False, where_rx, i)
        pack.regexes[name] = pack.regexes.get(name, ()) + tuple(patterns)
    for rule_id, ex in parsed.examples.items():
        match, no_match = pack.examples.get(rule_id, ((), ()))
        pack.examples[rule_id] = (match + tuple(ex.match), no_match + tuple(ex.no_match))
    for clause, text in parsed.sla.items():
        if clause not in spec.CLAUSES:
            raise _fail(Errors.E091, problem=f"sla: {clause!r} is not a clause id of SPEC §3", **where)
        pack.sla[clause] = text
    if parsed.templates:
        templates = _strip_lines(raw["templates"])
        _check_template_values(templates, file)
        pack.templates.update(templates)
    return bool(parsed.words or parsed.regex)


def _check_packs(packs: dict[str, LanguagePack], rules: list[Rule],
                 concepts: dict[str, Concept]) -> dict[str, LanguagePack]:
    """Every concept and rule a pack names exists; its words join the concepts'.

    Returns the supported languages: English and every pack's."""
    ids = {r.id for r in rules}
    for pack in packs.values():
        where = {"file": pack.files[0], "line": 1, "language": pack.code}
        for name in [*pack.words, *pack.regexes]:
            if name not in concepts:
                raise _fail(Errors.E008, name=name, file=pack.files[0], line=1, rule_id=f"language {pack.code}")
        for rule_id in pack.examples:
            if rule_id not in ids:
                raise _fail(Errors.E091, problem=f"examples for rule {rule_id}, which no rules file defines", **where)
        pack.tokenizer = pack.tokenizer or pack.code
        try:
            import spacy.util

            spacy.util.get_lang_class(pack.tokenizer)
        except Exception:  # spaCy raises its own ImportError subclass
            raise _fail(Errors.E091, problem=f"spaCy has no language '{pack.tokenizer}' to tokenize it "
                        "(set tokenizer: to one it has, or xx)", **where) from None
        for name, words in pack.words.items():
            concept = concepts[name]
            concept.words[pack.code] = concept.words.get(pack.code, ()) + words
    return {"en": LanguagePack("en", ENGLISH.name, ENGLISH.tokenizer, ENGLISH.lemmas), **packs}


def _check_references(rules: list[Rule], concepts: dict[str, Concept]) -> None:
    """Every concept a rule or concept names exists, and no concept includes itself."""
    for concept in concepts.values():
        for name in concept.include:
            if name not in concepts:
                raise _fail(Errors.E008, name=name, file=concept.file, line=concept.line,
                            rule_id=f"concept {concept.name}")
    for rule in rules:
        for term in sorted(rule.terms()):
            if CONCEPT_RE.match(term) and term not in concepts:
                raise _fail(Errors.E008, name=term, file=rule.file, line=rule.line, rule_id=rule.id)

    def expand(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            c = concepts[name]
            raise _fail(Errors.E010, cycle=" -> ".join(path + (name,)), file=c.file, line=c.line,
                        rule_id=f"concept {name}")
        for sub in concepts[name].include:
            expand(sub, path + (name,))

    for name in concepts:
        expand(name, ())


def _check_regular(path: Path) -> None:
    """Refuse a rules "file" that is not a regular file: reading a named pipe waits forever."""
    try:
        mode = path.stat().st_mode
    except OSError:
        raise RulesError(Errors.E019.format(file=path, kind="a broken link")) from None
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
                else "a device or socket")
        raise RulesError(Errors.E019.format(file=path, kind=kind))


#: What classifier/reply.py fills each reply placeholder with: always text, as here.
TEMPLATE_SAMPLES = {"severity": "critical", "response_time": "1 hour", "clause_id": "3.4.in.1",
                    "clause_text": "Diagnosis of errors in the product", "category": "product_error"}


def _check_template_values(templates: dict[str, Any], file: Path) -> None:
    """Fill every reply template in once with sample values, so that one that cannot be
    filled in (a format spec text does not take, such as {severity:d}, or a lone brace)
    is refused on load, not when a reply is written. Unknown placeholders are left to
    :func:`.reply.check_templates` (E016)."""
    formatter = string.Formatter()

    def walk(value: Any, where: str) -> Iterator[tuple[str, str]]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, f"{where}.{k}")
        elif isinstance(value, str):
            yield where, value

    for where, text in walk(templates, "templates"):
        try:
            text.format_map(TEMPLATE_SAMPLES)
            continue
        except (KeyError, IndexError, AttributeError):
            continue
        except (ValueError, TypeError) as exc:
            detail, needle = str(exc), text
        try:
            for _, name, spec, conversion in formatter.parse(text):
                if name in TEMPLATE_SAMPLES:
                    try:
                        format(formatter.convert_field(TEMPLATE_SAMPLES[name], conversion), spec or "")
                    except (ValueError, TypeError) as exc:
                        needle = ("{" + name + (f"!{conversion}" if conversion else "")
                                  + (f":{spec}" if spec else "") + "}")
                        detail = f"{needle} fails on {TEMPLATE_SAMPLES[name]!r}: {exc}"
                        break
        except ValueError:
            pass  # the text itself is malformed (a lone brace): the message says so already
        line = next((i for i, ln in enumerate(file.read_text(encoding="utf-8").splitlines(), 1)
                     if needle[:60] in ln), 0)
        raise RulesError(Errors.E018.format(file=file, line=line, rule_id=where, detail=detail))


def load_rules(rules_dir: str | Path | None = None) -> RuleSet:
    """Load every ``*.yaml`` under ``rules_dir`` (default: ``$INTAKE_RULES``, else the
    bundled rules).

    A file holds ``rules:`` (a list of rules), ``concepts:`` (vocabulary), ``language:``
    (a language pack), ``templates:`` (reply templates, checked by :mod:`.reply`) or
    ``segments:`` (words that mark the parts of a request). A missing or empty folder is
    an error, never silently replaced by the defaults.
    """
    import hashlib

    root = rules_source(rules_dir).path
    files = _rules_files(root)
    entries = []
    digest, vocabulary_digest = hashlib.sha256(), hashlib.sha256()
    for path in files:
        entry = path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes()
        digest.update(entry)
        entries.append((path, entry))
    # the same files were read before in this process: every pipeline, service and check
    # asks for them, and parsing a thousand lines of YAML per language takes a second
    loaded_as = (str(root), digest.hexdigest())
    if loaded_as in _LOADED:
        return _LOADED[loaded_as]
    rules: list[Rule] = []
    concepts: dict[str, Concept] = {}
    templates: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}
    packs: dict[str, LanguagePack] = {}
    segment_words = SegmentWords()
    for path, entry in entries:
        data = read_yaml(path)
        in_file = _segment_words_in(data, path)
        if in_file is not None:
            segment_words = segment_words.merged(in_file)
        if isinstance(data, dict) and isinstance(data.get("rules"), list):
            rules.extend(parse_rule(raw, path, seen) for raw in data["rules"])
        elif isinstance(data, dict) and isinstance(data.get("concepts"), dict):
            parse_concepts(data["concepts"], path, concepts)
            vocabulary_digest.update(entry)
        elif isinstance(data, dict) and "language" in data:
            if parse_pack(data, path, packs):
                vocabulary_digest.update(entry)
        elif isinstance(data, dict) and isinstance(data.get("templates"), dict):
            for key, value in data["templates"].items():
                if key != "__line__":
                    templates[key] = _strip_lines(value)
            _check_template_values(_strip_lines(data["templates"]), path)
        elif in_file is None:
            raise RulesError(Errors.E014.format(file=path, key="rules"))
    _check_references(rules, concepts)
    languages = _check_packs(packs, rules, concepts)
    ruleset = RuleSet(rules=rules, concepts=concepts, templates=templates, files=files, digest=digest.hexdigest(),
                      vocabulary_digest=vocabulary_digest.hexdigest(), languages=languages,
                      segment_words=segment_words)
    if len(_LOADED) >= 8:
        _LOADED.clear()
    _LOADED[loaded_as] = ruleset
    return ruleset


def _rules_files(root: Path) -> list[Path]:
    """Every ``*.yaml`` of a rules folder, in order; an error for a missing or empty folder
    or for a "file" that is not a regular one."""
    if not root.is_dir():
        raise RulesError(Errors.E001.format(path=root))
    files = sorted(root.rglob("*.yaml"))
    if not files:
        raise RulesError(Errors.E002.format(path=root))
    for path in files:
        _check_regular(path)
    return files


def _segment_words_in(data: Any, path: Path) -> SegmentWords | None:
    """The ``segments:`` of a file that gives them: a language pack file, or a file of its
    own (rules/segments.yaml) which holds no rules, concepts or templates."""
    if not isinstance(data, dict) or data.get("segments") is None:
        return None
    if "language" not in data and (isinstance(data.get("rules"), list) or isinstance(data.get("concepts"), dict)
                                   or isinstance(data.get("templates"), dict)):
        return None
    return parse_segments(data["segments"], path)


def load_segment_words(rules_dir: str | Path | None = None) -> SegmentWords:
    """The ``segments:`` words of a rules folder alone, checked as :func:`load_rules` checks
    them: what :mod:`.normalise` needs, read in a fraction of a second where loading every
    rule (spaCy, Hyperscan) takes seconds. The words come in the order load_rules gives them."""
    words = SegmentWords()
    for path in _rules_files(rules_source(rules_dir).path):
        in_file = _segment_words_in(read_yaml(path), path)
        if in_file is not None:
            words = words.merged(in_file)
    return words


#: (rules folder, digest of its files) -> the rules loaded from them: loaded rules are
#: never changed, so one load serves every pipeline of the process
_LOADED: dict[tuple[str, str], RuleSet] = {}
