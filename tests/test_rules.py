"""Tests for classifier/rules.py: the bundled rules, their examples and coverage, the
loader's exact error for each kind of broken rules file, and rules as data (a rule
added or changed in a folder takes effect with no code change)."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from classifier import spec
from classifier.cli import FIELD_DERIVED_FLAGS, TEXT_DERIVED_DELAYS, main
from classifier.errors import RulesError
from classifier.features import Analyser
from classifier.matching import build_pipeline
from classifier.request import Request
from classifier.reply import PLACEHOLDERS
from classifier.rules import DEFAULT_RULES_DIR, MAX_RULES_FILE_BYTES, TEMPLATE_SAMPLES, load_rules, load_segment_words

BROKEN = Path(__file__).resolve().parent / "fixtures" / "broken_rules"
BUNDLED = load_rules()

EXAMPLES = [
    pytest.param(rule.id, expected, text, id=f"{rule.id}-{expected}-{i}")
    for rule in BUNDLED.rules
    for expected, texts in (("match", rule.examples_match), ("no_match", rule.examples_no_match))
    for i, text in enumerate(texts)
]


def fired_rules(analyser: Analyser, text: str, subject: str | None = None) -> set[str]:
    """Ids of the rules that fire on one request."""
    analysed = next(analyser.analyse([Request(text=text, subject=subject)]))
    return {hit.rule_id for hit in analysed.hits}


@pytest.fixture(scope="module")
def example_hits(analyser: Analyser) -> dict[str, set[str]]:
    """Rule ids fired on every example text of every bundled rule, in one batch."""
    texts = sorted({text for _, _, text in (p.values for p in EXAMPLES)})
    analysed = analyser.analyse(Request(text=t) for t in texts)
    return {t: {h.rule_id for h in a.hits} for t, a in zip(texts, analysed)}


# ------------------------------------------------------------------ bundled rules


def test_bundled_rules_load_with_unique_ids() -> None:
    ids = [r.id for r in BUNDLED.rules]
    assert len(ids) == len(set(ids))
    assert len(ids) >= len(spec.CLAUSES)
    assert all(r.examples_match for r in BUNDLED.rules)


def test_bundled_rules_are_short_lines_over_word_lists_written_once() -> None:
    """A support lead reads a rule on one screen: no line over 200 characters; a list of
    words is a concept, written once and used by name."""
    from collections import Counter

    from classifier.rules import CONCEPT_RE

    files = [p for p in DEFAULT_RULES_DIR.rglob("*.yaml") if p.name != "replies.yaml"]
    assert len(files) >= 10 and any(p.parent.name == "vocabulary" for p in files)
    long_lines = [f"{p.name}:{i}" for p in files
                  for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if len(line) > 200]
    assert long_lines == []
    lists = Counter(frozenset(words) for c in BUNDLED.concepts.values() for words in c.words.values() if len(words) > 1)
    assert [sorted(words) for words, n in lists.items() if n > 1] == []
    inline = Counter(tuple(sorted(t for t in terms if not CONCEPT_RE.match(t)))
                     for r in BUNDLED.rules for terms in [*(c.terms for c in r.match), r.unless])
    assert [terms for terms, n in inline.items() if n > 1 and len(terms) > 1] == []
    assert max(len(terms) for terms in inline) <= 5  # longer lists belong in the vocabulary
    assert len(BUNDLED.concepts) >= 100


@pytest.mark.parametrize(("rule_id", "expected", "text"), EXAMPLES)
def test_rule_example(example_hits: dict[str, set[str]], rule_id: str, expected: str, text: str) -> None:
    fired = rule_id in example_hits[text]
    assert fired == (expected == "match"), f"{rule_id} {'did not fire' if expected == 'match' else 'fired'} on {text!r}"


def _coverage(example_hits: dict[str, set[str]], kind: str, labels: list[str]) -> dict[str, tuple[int, int]]:
    """Per label: passing (match, no_match) examples of the rules of that kind and label."""
    counts = {label: [0, 0] for label in labels}
    for rule in BUNDLED.of_kind(kind):
        if rule.label not in counts:
            continue
        counts[rule.label][0] += sum(rule.id in example_hits[t] for t in rule.examples_match)
        counts[rule.label][1] += sum(rule.id not in example_hits[t] for t in rule.examples_no_match)
    return {label: (m, n) for label, (m, n) in counts.items()}


@pytest.mark.parametrize(("kind", "labels"), [
    ("clause", list(spec.CLAUSES)),
    ("severity", list(spec.SEVERITIES)),
    ("info", list(spec.MISSING_ITEMS)),
    ("delay", [d for d in spec.DELAY_REASONS if d not in TEXT_DERIVED_DELAYS]),
    ("flag", [f for f in spec.FLAGS if f not in FIELD_DERIVED_FLAGS]),
], ids=["clauses", "severities", "missing_info", "delay_reasons", "flags"])
def test_every_label_has_rules_with_passing_examples(example_hits: dict[str, set[str]], kind: str,
                                                     labels: list[str]) -> None:
    coverage = _coverage(example_hits, kind, labels)
    thin = {label: c for label, c in coverage.items() if c[0] < 3 or c[1] < 1}
    assert thin == {}, f"labels with < 3 passing match or < 1 passing no_match examples: {thin}"


def test_coverage_lists_are_the_spec_ids() -> None:
    assert len(spec.CLAUSES) == 42
    assert set(TEXT_DERIVED_DELAYS) < set(spec.DELAY_REASONS)
    assert set(FIELD_DERIVED_FLAGS) < set(spec.FLAGS)
    # the text-revealed flags and delay reasons are the ones that need rules
    assert [f for f in spec.FLAGS if f not in FIELD_DERIVED_FLAGS] == ["multiple_issues", "urgent_recovery"]


# ------------------------------------------------------------------ broken rules files


def _labels() -> str:
    return ", ".join(spec.CLAUSES)


BROKEN_CASES = {
    # libyaml's wording when PyYAML has it (it does in every PyPI wheel), PyYAML's own otherwise
    "malformed_yaml": "[E003] {dir}/rules.yaml:10: YAML syntax error: " + (
        "did not find expected ',' or ']'" if yaml.__with_libyaml__ else "expected ',' or ']', but got '<scalar>'"),
    "unknown_key": ("[E004] {dir}/rules.yaml:3: rule 3.6.in.5#manuals: unknown key 'exclude'. Allowed keys: "
                    "category, description, examples, id, kind, label, match, read, scope, sla, unless, "
                    "unless_within, weight"),
    "missing_required_key": "[E005] {dir}/rules.yaml:3: rule 3.6.in.5#manuals: missing required key 'examples'.",
    "duplicate_id_two_rules": ("[E006] {dir}/rules.yaml:14: rule 3.6.in.5#manuals: duplicate id, "
                               "first defined in {dir}/rules.yaml:3."),
    "duplicate_id_two_files": ("[E006] {dir}/rules.yaml:3: rule 3.6.in.5#manuals: duplicate id, "
                               "first defined in {dir}/more_rules.yaml:3."),
    "unknown_clause": "[E007] {dir}/rules.yaml:3: rule 3.6.in.6: label '3.6.in.6' is not allowed. Allowed values: {labels}",
    "category_mismatch": ("[E015] {dir}/rules.yaml:3: rule 3.5.out.6#payu: category 'general' does not match "
                          "clause 3.5.out.6 (expected 'development')."),
    "wrong_scope": ("[E007] {dir}/rules.yaml:3: rule 3.5.out.6#payu: scope 'in_scope' is not allowed. "
                    "Allowed values: out_of_scope"),
    "unknown_concept": ("[E008] {dir}/rules.yaml:3: 3.6.in.5#manuals: uses concept MANUAL, which no file in "
                        "vocabulary/ defines. Define it there, or write the words out in quotes if they are a phrase."),
    "regex_does_not_compile": ("[E009] {dir}/rules.yaml:3: rule info.version.main: regex 1 does not compile: "
                               "missing ) at position 31"),
    "hyperscan_refused_regex": ("[E009] {dir}/rules.yaml:3: rule info.version.main: regex 1 does not compile: "
                                "Hyperscan cannot compile it: \\K at index 6 not supported."),
    "concept_cycle": ("[E010] {dir}/vocabulary.yaml:4: concept WEB_ADDRESS includes itself: "
                      "WEB_ADDRESS -> PORTAL_ADDRESS -> WEB_ADDRESS."),
    "near_not_a_list": ("[E011] {dir}/rules.yaml:3: rule 3.6.in.5#manuals: match.0.near must be a valid list, "
                        "got 'user manual'."),
    "weight_out_of_range": ("[E011] {dir}/rules.yaml:3: rule 3.6.in.5#manuals: weight must be less than or equal "
                            "to 1, got 1.5."),
    "unknown_read_segment": ("[E007] {dir}/rules.yaml:3: rule 3.6.in.5#manuals: read 'footer' is not allowed. "
                             "Allowed values: subject, prose, heading, code, quoted, signature, hidden, forwarded"),
    "yaml_alias": "[E013] {dir}/rules.yaml:11: YAML anchors and aliases are not allowed in rules files.",
    "python_object_tag": ("[E003] {dir}/rules.yaml:7: YAML syntax error: could not determine a constructor "
                          "for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    "no_rules_list": "[E014] {dir}/rules.yaml: expected a mapping with a 'rules' list at the top level.",
}


def test_every_broken_fixture_has_a_test() -> None:
    assert sorted(p.name for p in BROKEN.iterdir() if p.is_dir()) == sorted(BROKEN_CASES)


@pytest.mark.parametrize("case", sorted(BROKEN_CASES))
def test_broken_rules_file_is_refused_by_the_loader(case: str) -> None:
    folder = BROKEN / case
    with pytest.raises(RulesError) as info:
        load_rules(folder)
    assert str(info.value) == BROKEN_CASES[case].format(dir=folder, labels=_labels())


@pytest.mark.parametrize("case", sorted(BROKEN_CASES))
def test_broken_rules_file_is_refused_by_build_pipeline(case: str) -> None:
    folder = BROKEN / case
    message = BROKEN_CASES[case].format(dir=folder, labels=_labels())
    with pytest.raises(RulesError) as info:
        build_pipeline(folder)
    assert str(info.value) == message
    assert "\n" not in message


CONCEPT_PROBLEMS = [
    # a concept including one no file defines: E008 names the concept that includes it (the line is the
    # concept's first key)
    ("  DOCS:\n    include: [MANUALS]\n    en: [docs]\n",
     "[E008] {file}:3: concept DOCS: uses concept MANUALS, which no file in vocabulary/ defines. Define it there, "
     "or write the words out in quotes if they are a phrase."),
    # a concept including itself directly
    ("  DOCS:\n    include: [DOCS]\n    en: [docs]\n", "[E010] {file}:3: concept DOCS includes itself: DOCS -> DOCS."),
    ("  DOCS:\n    description: documentation\n", "[E011] {file}:3: rule concept DOCS: DOCS must be words in some "
     "language, include or regex, got none."),
    ("  DOCS:\n    english: [docs]\n", "[E004] {file}:3: rule concept DOCS: unknown key 'english'. Allowed keys: "
     "description, include, regex, any and two-letter language codes (en, ru, de …)"),
    ("  Docs:\n    en: [docs]\n", "[E011] {file}:3: rule concept Docs: concept name must be upper-case words "
     "joined by _, got 'Docs'."),
]


SEGMENT_PROBLEMS = [
    ('  sign_offs: ["… regards"]\n', "[E092] {file}:2: segments.sign_offs[0] '… regards': starts with …, which would "
     "mark nearly any line; start with a word (or # for a digit)."),
    ("  support_speakers: [agent …]\n", "[E092] {file}:2: segments.support_speakers[0] 'agent …': … stands for any "
     "text only in reply_headers, sign_offs, disclaimers; support_speakers takes words as written."),
    ("  message_separators: [-----Original Message-----]\n", "[E092] {file}:2: segments.message_separators[0] "
     "'-----Original Message-----': write the title without the dashes around it."),
    ("  forwarded_subject_prefixes: [FW, 'WG:']\n", "[E092] {file}:2: segments.forwarded_subject_prefixes[1] 'WG:': "
     "write the prefix without its colon ('Fwd', not 'Fwd:')."),
    ("  forwarded_separators: [---Forwarded message---]\n", "[E092] {file}:2: segments.forwarded_separators[0] "
     "'---Forwarded message---': write the title without the dashes around it."),
    ("  sender_fields: [From, 'Von:']\n", "[E092] {file}:2: segments.sender_fields[1] 'Von:': write the field name "
     "without its colon ('From', not 'From:')."),
    ("  sign_offs: [{phrase: cheers, any_text: 10}]\n", "[E092] {file}:2: segments.sign_offs[0] 'cheers': has "
     "any_text but no … for it to stand for."),
    ("  sign_offs:\n    - {phrase: regards …, any_text: 500}\n", "[E092] {file}:2: segments.sign_offs[0]: must be a "
     "list of phrases, each a text or {{phrase: <text with …>, any_text: 1 to 200}} (any_text: Input should be less "
     "than or equal to 200)."),
    ("  reply_headers: [\"#…\"]\n", "[E092] {file}:2: segments.reply_headers[0] '#…': has no word; write the words "
     "that mark the line."),
    ("  signoffs: [cheers]\n", "[E092] {file}:2: segments.signoffs: unknown key; allowed keys: reply_headers, "
     "sign_offs, disclaimers, message_separators, forwarded_separators, forwarded_subject_prefixes, sender_fields, "
     "more_to_say, disclaimer_words, support_speakers."),
]


@pytest.mark.parametrize(("body", "message"), SEGMENT_PROBLEMS, ids=["leading_any_text", "any_text_in_words",
                                                                     "separator_dashes", "prefix_colon",
                                                                     "forwarded_dashes", "field_colon",
                                                                     "any_text_without_placeholder", "any_text_too_long",
                                                                     "no_word", "unknown_key"])
def test_a_broken_segments_entry_is_refused_naming_file_line_and_entry(tmp_path: Path, body: str,
                                                                      message: str) -> None:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - id: 3.6.in.5#docs\n    kind: clause\n    category: general\n    scope: in_scope\n"
        "    sla: Requests for additional product documentation.\n    match:\n      - phrase: user manual\n"
        "    examples:\n      match: ['Is there a user manual in Polish?']\n", encoding="utf-8")
    path = tmp_path / "segments.yaml"
    path.write_text("segments:\n" + body, encoding="utf-8")
    expected = message.format(file=path) + ' See docs/rules.md, "Words that cut a request into parts".'
    for load in (load_rules, load_segment_words):
        with pytest.raises(RulesError) as info:
            load(tmp_path)
        assert str(info.value) == expected


@pytest.mark.parametrize(("body", "message"), CONCEPT_PROBLEMS, ids=["undefined_include", "self_include",
                                                                     "no_words", "unknown_key", "lower_case_name"])
def test_broken_vocabulary_is_refused_naming_the_concept(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - id: 3.6.in.5#docs\n    kind: clause\n    category: general\n    scope: in_scope\n"
        "    sla: Requests for additional product documentation.\n    match:\n      - phrase: user manual\n"
        "    examples:\n      match: ['Is there a user manual in Polish?']\n", encoding="utf-8")
    path = tmp_path / "vocabulary" / "docs.yaml"
    path.parent.mkdir()
    path.write_text("concepts:\n" + body, encoding="utf-8")
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path)
    assert str(info.value) == message.format(file=path)


def test_undefined_concept_in_unless_is_refused_naming_rule_and_concept(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - id: 3.6.in.5#docs\n    kind: clause\n    category: general\n    scope: in_scope\n"
        "    sla: Requests for additional product documentation.\n    match:\n      - phrase: user manual\n"
        "    unless: [PRICE_LIST, \"price\"]\n"
        "    examples:\n      match: ['Is there a user manual in Polish?']\n", encoding="utf-8")
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path)
    assert str(info.value).startswith(f"[E008] {path}:2: 3.6.in.5#docs: uses concept PRICE_LIST, which no file")


@pytest.mark.parametrize(("condition", "detail"), [
    ("- phrase: user manual\n        within: 3", "match[1].within must be used only with near or then, got phrase."),
    ("- phrase: user manual\n        case_sensitive: true",
     "match[1].case_sensitive must be used only with a regex, got phrase."),
    ("- phrase: user manual\n        near: [MANUAL, polish]",
     "match[1] must be exactly one of concept, phrase, near, then, regex, got phrase, near."),
    ("- concept: manual", "match[1].concept must be a concept name such as INSTALL, got 'manual'."),
])
def test_malformed_condition_is_refused(tmp_path: Path, condition: str, detail: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - id: 3.6.in.5#docs\n    kind: clause\n    category: general\n    scope: in_scope\n"
        f"    sla: Requests for additional product documentation.\n    match:\n      {condition}\n"
        "    examples:\n      match: ['Is there a user manual in Polish?']\n", encoding="utf-8")
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path)
    assert str(info.value) == f"[E011] {path}:2: rule 3.6.in.5#docs: {detail}"


def test_bundled_vocabulary_has_concepts_and_a_digest_of_its_own() -> None:
    assert len(BUNDLED.concepts) > 50
    assert all(f.parent.name != "vocabulary" or f.suffix == ".yaml" for f in BUNDLED.files)
    assert len(BUNDLED.vocabulary_digest) == 64 and BUNDLED.vocabulary_digest != BUNDLED.digest
    used = {t for r in BUNDLED.rules for t in r.terms()} | {i for c in BUNDLED.concepts.values() for i in c.include}
    assert {t for t in used if t.isupper()} <= set(BUNDLED.concepts)


def test_missing_rules_folder(tmp_path: Path) -> None:
    missing = tmp_path / "rules"
    with pytest.raises(RulesError) as info:
        load_rules(missing)
    assert str(info.value) == f"[E001] Rules folder {missing} does not exist."


def test_empty_rules_folder_is_not_replaced_by_defaults(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("rules go here\n", encoding="utf-8")
    with pytest.raises(RulesError) as info:
        build_pipeline(tmp_path)
    assert str(info.value) == f"[E002] Rules folder {tmp_path} has no .yaml rules files."


def test_oversize_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("rules:\n" + "# padding padding padding padding padding padding\n" * 45_000, encoding="utf-8")
    size = path.stat().st_size
    assert size > 2 * 1024 * 1024
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path)
    assert str(info.value) == f"[E012] {path}: rules file is {size} bytes, over the limit of 2097152 bytes."
    assert MAX_RULES_FILE_BYTES == 2 * 1024 * 1024


@pytest.mark.parametrize("case", ["unknown_clause", "yaml_alias"])
def test_cli_rules_check_reports_broken_file(case: str) -> None:
    folder = BROKEN / case
    result = CliRunner().invoke(main, ["rules", "check", "--rules", str(folder)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {BROKEN_CASES[case].format(dir=folder, labels=_labels())}\n"


def test_cli_rules_check_missing_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["rules", "check", "--rules", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stderr == f"Error: [E001] Rules folder {tmp_path / 'nope'} does not exist.\n"


# ------------------------------------------------------------------ rules are data

POLISH_MANUAL_RULE = """\
# Local rule: customers asking for the documentation in Polish.
rules:
  - id: 3.6.in.5#polish_manual
    kind: clause
    category: general
    scope: in_scope
    sla: "Requests for additional product documentation."
    description: "asks for a manual or guide in Polish"
    weight: 0.8
    match:
      - then: [LOCAL_MANUAL, "in polish"]
        within: 3
      - phrase: "instrukcja obsługi"
    examples:
      match:
        - "Is there a user manual in Polish? Our warehouse staff do not read English."
        - "Czy jest instrukcja obsługi po polsku dla modułu CRM?"
        - "We need the administrator guide in Polish for the audit."
      no_match:
        - "Is there a user manual in German?"
"""
#: The concept the rule uses, in a vocabulary file of its own (any folder of the rules works).
POLISH_VOCABULARY = """\
concepts:
  # a manual, guide or other piece of documentation
  LOCAL_MANUAL:
    en: [manual, guide, documentation, instruction]
    pl: [instrukcja, podręcznik]
"""
POLISH_REQUEST = ("Dzień dobry, we bought Bitrix24 Business for our office in Kraków last month. Most of the "
                  "sales team does not read English well. Is there a user manual in Polish, or at least the "
                  "CRM chapter translated?")


@pytest.fixture()
def rules_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, folder)
    (folder / "vocabulary" / "local_polish.yaml").write_text(POLISH_VOCABULARY, encoding="utf-8")
    return folder


def test_added_rule_takes_effect_without_code_change(rules_copy: Path, analyser: Analyser) -> None:
    assert "3.6.in.5#polish_manual" not in fired_rules(analyser, POLISH_REQUEST)
    (rules_copy / "clauses" / "local_polish.yaml").write_text(POLISH_MANUAL_RULE, encoding="utf-8")
    local = Analyser(rules_copy)
    assert "3.6.in.5#polish_manual" in fired_rules(local, POLISH_REQUEST)
    assert "3.6.in.5#polish_manual" not in fired_rules(local, POLISH_REQUEST.replace("Polish", "German"))

    result = CliRunner().invoke(main, ["rules", "check", "--rules", str(rules_copy)])
    assert result.exit_code == 0, result.output
    assert f"{len(BUNDLED.rules) + 1} rules in {len(BUNDLED.files) + 2} files" in result.output
    assert "0 failed" in result.output


def test_changed_vocabulary_changes_the_result(rules_copy: Path, analyser: Analyser) -> None:
    text = "Hello, is the licence per user, per server or per company? We could not find it in the contract."
    assert "3.6.in.2" in fired_rules(analyser, text)
    path = rules_copy / "vocabulary" / "product_error_general.yaml"
    source = path.read_text(encoding="utf-8")
    words = "per user, per server, per company, "
    assert source.count(words) == 1
    path.write_text(source.replace(words, ""), encoding="utf-8")
    changed = Analyser(rules_copy)
    assert "3.6.in.2" not in fired_rules(changed, text)
    assert changed.ruleset.vocabulary_digest != BUNDLED.vocabulary_digest


def test_changed_rule_changes_the_result(rules_copy: Path, analyser: Analyser) -> None:
    text = "Does our licence from 2023 cover a staging copy?"
    unchanged = load_rules(rules_copy)
    path = rules_copy / "clauses" / "general.yaml"
    source = path.read_text(encoding="utf-8")
    old = "      - near: [LICENSE, LICENSE_TERMS]\n        within: 6\n"
    assert source.count(old) == 1
    path.write_text(source.replace(old, "      - near: [LICENSE, LICENSE_TERMS]\n        within: 1\n"), encoding="utf-8")
    assert "3.6.in.2" in fired_rules(analyser, text)
    changed = Analyser(rules_copy)
    assert "3.6.in.2" not in fired_rules(changed, text)
    assert changed.ruleset.vocabulary_digest == unchanged.vocabulary_digest
    assert changed.ruleset.digest != unchanged.digest


#: A support lead's new rule: the Sites page editor showing nothing is a product error
#: (§3.4), with its two concepts in a vocabulary file of their own.
EDITOR_VOCABULARY = """\
concepts:
  PAGE_EDITOR:
    description: the editor of Sites and landing pages
    en: [page editor, site editor, landing editor, block editor]
  SHOWS_NOTHING:
    description: a screen or page that shows nothing at all
    en: [blank screen, white screen, empty page, blank page, show nothing]
"""
EDITOR_RULE = """\
rules:
  - id: 3.4.in.2#editor_blank
    kind: clause
    category: product_error
    scope: in_scope
    sla: "Bitrix24 product runtime and operation errors."
    description: "the Sites page editor shows nothing"
    weight: 1.0
    match:
      - near: [PAGE_EDITOR, SHOWS_NOTHING]
        within: 6
    examples:
      match: ["The page editor shows a blank screen."]
      no_match: ["The page editor is slow since the update."]
"""
EDITOR_REQUESTS = [
    "The Vibe page editor shows a blank screen since this morning, on our box version 24.100.0, "
    "https://portal.example.com",
    "Since the weekend our landing editor opens an empty page for every block. Site https://shop.example.com, "
    "version 24.200.0",
    "Hi, site editor = white screen, all browsers. Box 23.900.0, https://example.org",
]


def _decisions(rules: Path) -> list[tuple[str | None, str | None]]:
    from classifier import Classifier

    classifier = Classifier.load(rules_dir=rules)  # the bundled model each time: no retraining
    return [(r.category, r.clauses[0]["id"]) for r in classifier.classify_many(EDITOR_REQUESTS)]


def test_a_rule_added_in_yaml_changes_the_clause_with_the_bundled_model(rules_copy: Path) -> None:
    before = _decisions(rules_copy)
    # the model alone does not take a blank editor for a software error (3.4.in.2)
    assert all(clause != "3.4.in.2" for _, clause in before)
    (rules_copy / "vocabulary" / "local_editor.yaml").write_text(EDITOR_VOCABULARY, encoding="utf-8")
    rule_file = rules_copy / "clauses" / "local_editor.yaml"
    rule_file.write_text(EDITOR_RULE, encoding="utf-8")

    after = _decisions(rules_copy)
    assert after == [("product_error", "3.4.in.2")] * 3

    rule_file.unlink()  # removing the rule takes its effect away again
    assert _decisions(rules_copy) == before


def test_rule_example_that_fails_is_reported_by_rules_check(rules_copy: Path) -> None:
    (rules_copy / "clauses" / "local_polish.yaml").write_text(
        POLISH_MANUAL_RULE.replace('"Is there a user manual in German?"', '"Is there a user manual in Polish too?"'),
        encoding="utf-8")
    result = CliRunner().invoke(main, ["rules", "check", "--rules", str(rules_copy)])
    assert result.exit_code == 1
    path = rules_copy / "clauses" / "local_polish.yaml"
    assert (f"FAIL {path}:3: rule 3.6.in.5#polish_manual: example should not match but did: "
            "'Is there a user manual in Polish too?'") in result.output


# ------------------------------------------------------------------ checks rules check makes


def test_rule_without_examples_is_refused_naming_it(rules_copy: Path) -> None:
    path = rules_copy / "clauses" / "local_polish.yaml"
    path.write_text(POLISH_MANUAL_RULE.split("    examples:")[0] + "    examples:\n      no_match: []\n",
                    encoding="utf-8")
    message = f"[E005] {path}:3: rule 3.6.in.5#polish_manual: missing required key 'examples.match'."
    with pytest.raises(RulesError) as info:
        load_rules(rules_copy)
    assert str(info.value) == message
    result = CliRunner().invoke(main, ["rules", "check", "--rules", str(rules_copy)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message}\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_named_pipe_in_the_rules_folder_is_refused_not_waited_on(rules_copy: Path) -> None:
    fifo = rules_copy / "clauses" / "zz_local.yaml"
    os.mkfifo(fifo)
    outcome: list = []

    def check() -> None:
        outcome.append(CliRunner().invoke(main, ["rules", "check", "--rules", str(rules_copy)]))

    runner = threading.Thread(target=check, daemon=True)
    runner.start()
    runner.join(60)
    assert outcome, "rules check is still waiting to read the named pipe"
    assert outcome[0].exit_code == 1
    assert outcome[0].stderr == (f"Error: [E019] {fifo} is a named pipe (FIFO), not a regular file; a rules folder "
                                 "holds only regular .yaml files: remove it, or replace it with a copy of the file.\n")


def test_folder_named_like_a_rules_file_is_refused(rules_copy: Path) -> None:
    (rules_copy / "old.yaml").mkdir()
    with pytest.raises(RulesError) as info:
        load_rules(rules_copy)
    assert str(info.value).startswith(f"[E019] {rules_copy / 'old.yaml'} is a directory, not a regular file;")


@pytest.mark.parametrize(("template", "detail"), [
    ("{severity:d}", "{severity:d} fails on 'critical': Unknown format code 'd' for object of type 'str'"),
    ("{response_time:.1f}", "{response_time:.1f} fails on '1 hour': Unknown format code 'f' for object of type 'str'"),
    ("{severity!x}", "{severity!x} fails on 'critical': Unknown conversion specifier x"),
    ("critical}", "Single '}' encountered in format string"),
])
def test_reply_template_that_cannot_be_filled_in_is_refused_by_rules_check(rules_copy: Path, template: str,
                                                                          detail: str) -> None:
    path = rules_copy / "replies.yaml"
    source = path.read_text(encoding="utf-8")
    old = "registered your request with critical severity;"
    assert source.count(old) == 1
    path.write_text(source.replace(old, f"registered your request with {template} severity;"), encoding="utf-8")
    line = next(i for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if f"with {template} " in ln)
    message = (f"[E018] {path}:{line}: template templates.acknowledgement.critical cannot be filled in: {detail}. "
               "Placeholders are filled with text: use them bare ({severity}) or with a format text accepts "
               "({severity:>10}); write a brace as {{ or }}.")
    result = CliRunner().invoke(main, ["rules", "check", "--rules", str(rules_copy)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message}\n"
    with pytest.raises(RulesError) as info:  # and so does every command that loads the rules
        Analyser(rules_copy)
    assert str(info.value) == message


def test_reply_template_with_a_format_text_takes_is_accepted(rules_copy: Path) -> None:
    path = rules_copy / "replies.yaml"
    source = path.read_text(encoding="utf-8")
    path.write_text(source.replace("with critical severity;", "with {severity:>10} severity;"), encoding="utf-8")
    assert load_rules(rules_copy).templates["acknowledgement"]["critical"].count("{severity:>10}") == 1


def test_template_samples_are_the_placeholders_reply_fills() -> None:
    assert set(TEMPLATE_SAMPLES) == set(PLACEHOLDERS)
    assert all(isinstance(v, str) for v in TEMPLATE_SAMPLES.values())  # as write_reply fills them
