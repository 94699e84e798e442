"""Load and validate the YAML rules in ``rules/``.

Rules are data: each is a mapping with a stable ``id`` that every result cites.
Loading is layered like spaCy's span ruler: the YAML is read with a safe loader
that refuses aliases (no "billion laughs") and remembers line numbers, each rule
is checked against a schema and against the label contract in :mod:`.spec`, and
the matcher then compiles the patterns with ``validate=True``. Every problem is
one line that names the file, the line, the rule id and what is allowed.
"""
from __future__ import annotations

import re
import stat
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import regex
import yaml

from . import spec
from .errors import Errors, RulesError
from .locations import bundled, rules_source

#: Largest rules file accepted; real ones are a few KB.
MAX_RULES_FILE_BYTES = 2 * 1024 * 1024
#: The bundled rules (package data when installed, ``rules/`` in a checkout).
DEFAULT_RULES_DIR = bundled("rules")

KINDS = ("clause", "severity", "info", "delay", "flag")
SEGMENTS = ("subject", "prose", "code", "quoted", "signature", "hidden")
#: What each kind of rule reads by default. Clause rules ignore pasted logs and
#: quoted replies so a stack trace mentioning ``mysqli`` is not a database question.
DEFAULT_SEGMENTS: dict[str, tuple[str, ...]] = {
    "clause": ("subject", "prose"),
    "severity": ("subject", "prose"),
    "info": ("subject", "prose", "code", "signature"),
    "delay": ("subject", "prose", "signature"),
    "flag": ("subject", "prose", "code", "signature"),
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
             "patterns", "exclude", "read", "examples"}
REQUIRED_KEYS = ("id", "kind", "patterns", "examples")
PATTERN_KEYS = {"tokens", "phrase", "regex", "case_sensitive", "requires"}
ID_RE = re.compile(r"^[A-Za-z0-9_.#:-]+$")
# A group that contains a quantifier and is itself repeated without a small bound:
# (a+)+, (\w*x)*, (?:a|b+){2,}. A bounded repeat such as (?:[a-z]{1,63}\.){0,4} is allowed.
_NESTED_QUANTIFIER = re.compile(
    r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)(?:[+*]|\{\d*,\}|\{\d*,(?:\d{3,}|[1-9]\d)\})")


@dataclass(frozen=True)
class Pattern:
    """One way a rule can match: a token pattern, a lemma phrase or a regex."""

    kind: str  # "tokens" | "phrase" | "regex"
    value: Any
    case_sensitive: bool = False
    #: regex only: substrings one of which must occur in the lower-cased text for the
    #: regex to run at all (a cheap test that skips most texts it cannot match)
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A validated rule. ``label`` is what a hit means (a clause id, severity …)."""

    id: str
    kind: str
    label: str
    patterns: tuple[Pattern, ...]
    exclude: tuple[Pattern, ...] = ()
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


@dataclass
class RuleSet:
    """Every rule and reply template loaded from one rules folder."""

    rules: list[Rule]
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    digest: str = ""

    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}

    def of_kind(self, kind: str) -> list[Rule]:
        return [r for r in self.rules if r.kind == kind]


#: libyaml's parser when PyYAML has it (about ten times faster on the rules folder)
_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Parser):  # type: ignore[misc, valid-type]
    """Safe loader that records each mapping's line (aliases are refused before it runs)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
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


_TEXT_ATTRS = {"ORTH", "TEXT", "LOWER", "LEMMA", "NORM"}


def _text_values_as_strings(token: dict[str, Any]) -> dict[str, Any]:
    """YAML reads ``[two, 2]`` as a string and an int; text attributes want strings."""
    out = {}
    for attr, spec_ in token.items():
        if attr.upper() in _TEXT_ATTRS:
            if isinstance(spec_, (int, float)) and not isinstance(spec_, bool):
                spec_ = str(spec_)
            elif isinstance(spec_, dict):
                spec_ = {op: ([str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in vals]
                              if isinstance(vals, list) else vals) for op, vals in spec_.items()}
        out[attr] = spec_
    return out


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


def _parse_patterns(raw: Any, where: dict[str, Any], key: str) -> tuple[Pattern, ...]:
    if raw is None and key == "exclude":
        return ()
    if not isinstance(raw, list) or (key == "patterns" and not raw):
        raise _fail(Errors.E011, field=key, expected="a non-empty list", got=type(raw).__name__, **where)
    out = []
    for i, entry in enumerate(raw, 1):
        if isinstance(entry, str):
            entry = {"phrase": entry}
        if isinstance(entry, list):
            entry = {"tokens": entry}
        if not isinstance(entry, dict):
            raise _fail(Errors.E011, field=f"{key}[{i}]", expected="a phrase, a token list or a mapping",
                        got=type(entry).__name__, **where)
        entry = {k: v for k, v in entry.items() if k != "__line__"}
        unknown = set(entry) - PATTERN_KEYS
        if unknown:
            raise _fail(Errors.E004, key=sorted(unknown)[0], allowed=", ".join(sorted(PATTERN_KEYS)), **where)
        forms = [k for k in ("tokens", "phrase", "regex") if k in entry]
        if len(forms) != 1:
            raise _fail(Errors.E011, field=f"{key}[{i}]", expected="exactly one of tokens, phrase, regex",
                        got=", ".join(forms) or "none", **where)
        form = forms[0]
        value = _strip_lines(entry[form])
        case = bool(entry.get("case_sensitive", False))
        requires = entry.get("requires", [])
        if requires and form != "regex":
            raise _fail(Errors.E011, field=f"{key}[{i}].requires", expected="used only with a regex", got=form, **where)
        if not isinstance(requires, list) or not all(isinstance(r, str) and r for r in requires):
            raise _fail(Errors.E011, field=f"{key}[{i}].requires", expected="a list of non-empty strings",
                        got=repr(requires), **where)
        if form == "regex":
            if not isinstance(value, str):
                raise _fail(Errors.E011, field=f"{key}[{i}].regex", expected="a string", got=type(value).__name__, **where)
            nested = _NESTED_QUANTIFIER.search(value)
            if nested:
                raise _fail(Errors.E010, index=i, fragment=nested.group(0), **where)
            try:
                regex.compile(value)
            except regex.error as exc:
                raise _fail(Errors.E009, index=i, detail=exc, **where) from None
        elif form == "phrase":
            if not isinstance(value, str) or not value.strip():
                raise _fail(Errors.E011, field=f"{key}[{i}].phrase", expected="a non-empty string", got=repr(value), **where)
        else:
            if not isinstance(value, list) or not value or not all(isinstance(t, dict) for t in value):
                raise _fail(Errors.E008, index=i, detail="expected a non-empty list of token mappings", **where)
            value = [_text_values_as_strings(t) for t in value]
        out.append(Pattern(form, value, case, tuple(r.lower() for r in requires)))
    return tuple(out)


def _examples(raw: Any, where: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise _fail(Errors.E011, field="examples", expected="a mapping with 'match' and 'no_match' lists",
                    got=type(raw).__name__, **where)
    raw = {k: v for k, v in raw.items() if k != "__line__"}
    unknown = set(raw) - {"match", "no_match"}
    if unknown:
        raise _fail(Errors.E004, key=sorted(unknown)[0], allowed="match, no_match", **where)
    lists = []
    for k in ("match", "no_match"):
        v = raw.get(k, [])
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise _fail(Errors.E011, field=f"examples.{k}", expected="a list of strings", got=type(v).__name__, **where)
        lists.append(tuple(v))
    if not lists[0]:  # a rule nothing shows firing passes every check untested
        raise _fail(Errors.E011, field="examples.match", got="none",
                    expected="at least one text the rule must match, so that intake rules check tests it", **where)
    return lists[0], lists[1]


def parse_rule(raw: Any, file: Path, seen: dict[str, str]) -> Rule:
    """Validate one rule mapping; ``seen`` maps ids to where they were first defined."""
    line = raw.get("__line__", 0) if isinstance(raw, dict) else 0
    rule_id = raw.get("id", "?") if isinstance(raw, dict) else "?"
    where = {"file": file, "line": line, "rule_id": rule_id}
    if not isinstance(raw, dict):
        raise _fail(Errors.E011, field="rule", expected="a mapping", got=type(raw).__name__, **where)
    for key in raw:
        if key != "__line__" and key not in RULE_KEYS:
            raise _fail(Errors.E004, key=key, allowed=", ".join(sorted(RULE_KEYS)), **where)
    for key in REQUIRED_KEYS:
        if key not in raw:
            raise _fail(Errors.E005, key=key, **where)
    if not isinstance(rule_id, str) or not ID_RE.match(rule_id):
        raise _fail(Errors.E011, field="id", expected="letters, digits and . _ # : -", got=repr(rule_id), **where)
    if rule_id in seen:
        raise _fail(Errors.E006, first=seen[rule_id], **where)
    kind = raw["kind"]
    if kind not in KINDS:
        raise _fail(Errors.E007, field="kind", value=kind, allowed=", ".join(KINDS), **where)
    label = raw.get("label", rule_id.split("#")[0] if kind == "clause" else None)
    if label is None:
        raise _fail(Errors.E005, key="label", **where)
    if label not in KIND_LABELS[kind]:
        raise _fail(Errors.E007, field="label", value=label, allowed=", ".join(KIND_LABELS[kind]), **where)
    category = raw.get("category")
    scope = raw.get("scope")
    sla = raw.get("sla")
    if kind == "clause":
        for key in ("category", "scope", "sla"):
            if key not in raw:
                raise _fail(Errors.E005, key=key, **where)
        if category not in spec.CATEGORIES:
            raise _fail(Errors.E007, field="category", value=category, allowed=", ".join(spec.CATEGORIES), **where)
        expected_cat, expected_scope = spec.CLAUSES[label]
        if category != expected_cat:
            raise _fail(Errors.E015, value=category, clause=label, expected=expected_cat, **where)
        if scope != expected_scope:
            raise _fail(Errors.E007, field="scope", value=scope, allowed=expected_scope, **where)
    weight = raw.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1:
        raise _fail(Errors.E011, field="weight", expected="a number in (0, 1]", got=repr(weight), **where)
    read = raw.get("read", list(DEFAULT_SEGMENTS[kind]))
    if not isinstance(read, list) or not read:
        raise _fail(Errors.E011, field="read", expected="a non-empty list", got=repr(read), **where)
    for seg in read:
        if seg not in SEGMENTS:
            raise _fail(Errors.E007, field="read", value=seg, allowed=", ".join(SEGMENTS), **where)
    patterns = _parse_patterns(raw["patterns"], where, "patterns")
    exclude = _parse_patterns(raw.get("exclude"), where, "exclude")
    match, no_match = _examples(raw["examples"], where)
    seen[rule_id] = f"{file}:{line}"
    return Rule(id=rule_id, kind=kind, label=label, patterns=patterns, exclude=exclude,
                read=tuple(read), weight=float(weight), category=category, scope=scope,
                sla=sla, description=raw.get("description"), examples_match=match,
                examples_no_match=no_match, file=str(file), line=line)


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

    A file holds either ``rules:`` (a list of rules) or ``templates:`` (reply
    templates, checked by :mod:`.reply`). A missing or empty folder is an error,
    never silently replaced by the defaults.
    """
    import hashlib

    root = rules_source(rules_dir).path
    if not root.is_dir():
        raise RulesError(Errors.E001.format(path=root))
    files = sorted(root.rglob("*.yaml"))
    if not files:
        raise RulesError(Errors.E002.format(path=root))
    rules: list[Rule] = []
    templates: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}
    digest = hashlib.sha256()
    for path in files:
        _check_regular(path)
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
        data = read_yaml(path)
        if isinstance(data, dict) and isinstance(data.get("rules"), list):
            rules.extend(parse_rule(raw, path, seen) for raw in data["rules"])
        elif isinstance(data, dict) and isinstance(data.get("templates"), dict):
            for key, value in data["templates"].items():
                if key != "__line__":
                    templates[key] = _strip_lines(value)
            _check_template_values(_strip_lines(data["templates"]), path)
        else:
            raise RulesError(Errors.E014.format(file=path, key="rules"))
    return RuleSet(rules=rules, templates=templates, files=files, digest=digest.hexdigest())
