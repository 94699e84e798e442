"""The suggested reply (SPEC §8): one part per finding, never a secret, never a
promise of excluded work; broken templates are refused with E016/E017."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from classifier import spec
from classifier.classify import Classifier
from classifier.decide import Decision
from classifier.errors import RulesError
from classifier.reply import check_templates, write_reply
from classifier.rules import DEFAULT_RULES_DIR, load_rules

#: Phrases that would promise work the SLA excludes.
PROMISES = re.compile(r"\bwe (?:will|'ll|can|shall) (?:fix|install|develop|write|implement|configure|set up|tune|"
                      r"build|optimi[sz]e|integrate|move|migrate|log in|connect)\b", re.I)


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load(use_model=False)


@pytest.fixture(scope="module")
def with_model() -> Classifier:
    return Classifier.load()


def decision(clause: str = "3.4.in.1", severity: str = "medium", missing=(), delays=(), flags=()) -> Decision:
    category, scope = spec.CLAUSES[clause]
    delays = list(delays) + (["out_of_scope"] if scope == "out_of_scope" else [])
    return Decision(category=category, clause=clause, scope=scope, clauses=[clause], severity=severity,
                    missing_info=list(missing), delay_reasons=[d for d in spec.DELAY_REASONS if d in delays],
                    flags=list(flags), confidence=0.9, needs_review=False)


def reply(clf: Classifier, d: Decision) -> str:
    return write_reply(d, clf.templates, clf.clause_texts)


# ---------------------------------------------------------------- acknowledgement and missing items
@pytest.mark.parametrize("severity, target", [("critical", "within 1 hour."), ("high", "within 1 hour."),
                                              ("medium", "within 24 hours."), ("low", "within 72 hours.")])
def test_acknowledgement_states_the_response_target(clf, severity, target):
    text = reply(clf, decision(severity=severity))
    parts = text.split("\n\n")
    assert parts[0] == "Hello,"
    assert parts[1].startswith("Thank you for contacting Bitrix24 technical support.")
    assert parts[1].endswith(target)
    assert parts[-1] == "Best regards,\nBitrix24 Technical Support"


def test_one_line_per_missing_item_with_where_to_find_it(clf):
    text = reply(clf, decision(missing=["url", "version", "steps_to_reproduce"], delays=["missing_information"]))
    part = next(p for p in text.split("\n\n") if p.startswith("To investigate, please send us"))
    lines = part.split("\n")[1:]
    assert len(lines) == 3 and all(line.startswith("- ") for line in lines)
    assert "address (URL)" in lines[0]
    assert "Settings > Platform updates" in lines[1] and "main module" in lines[1]
    assert "steps to reproduce" in lines[2]
    assert "edition" not in part


def test_nothing_missing_asks_for_nothing(clf):
    text = reply(clf, decision())
    assert "please send us" not in text
    assert len(text.split("\n\n")) == 3  # greeting, acknowledgement, closing


# ---------------------------------------------------------------- out of scope
@pytest.mark.parametrize("clause, where", [
    ("1.3.out.1", "contact your hosting company"),
    ("1.4.out.1", "Partners directory"),
    ("4.5.out.1", "Bitrix24 sales"),
    ("3.5.out.6", "a Bitrix24 Partner or your developer"),
    ("3.1.out.4", "your system administrator or hosting company"),
    ("3.4.out.3", "your system administrator or hosting company"),
])
def test_out_of_scope_cites_the_clause_and_where_to_go(clf, clause, where):
    text = reply(clf, decision(clause, severity="low"))
    part = next(p for p in text.split("\n\n") if clause in p)
    assert "SLA clause " + clause in part
    assert where in part
    assert not PROMISES.search(text), text


def test_out_of_scope_quotes_the_sla_text_of_the_clause(clf):
    text = reply(clf, decision("3.5.out.6", severity="low", delays=["requires_custom_improvement"]))
    assert clf.clause_texts["3.5.out.6"].rstrip(".") in text
    # the out-of-scope part already says where custom work goes: no second note about it
    assert "needs a change to the product or custom work" not in text


def test_in_scope_reply_has_no_out_of_scope_part(clf):
    text = reply(clf, decision("3.4.in.1"))
    assert "outside the scope" not in text and "SLA clause" not in text


@pytest.mark.parametrize("clause", [c for c, (_, scope) in spec.CLAUSES.items() if scope == "out_of_scope"])
def test_no_out_of_scope_reply_promises_the_excluded_work(clf, clause):
    text = reply(clf, decision(clause, severity="high", flags=["urgent_recovery"]))
    assert not PROMISES.search(text), text
    assert "processed with priority" not in text  # priority recovery is for in-scope work only


# ---------------------------------------------------------------- flags
def test_multiple_issues_asks_to_split(clf):
    text = reply(clf, decision(flags=["multiple_issues"]))
    assert "please send each other issue as a separate request" in text
    assert "SLA §2.2" in text


def test_credentials_present_reminds_to_change_passwords(clf):
    text = reply(clf, decision(flags=["credentials_present"]))
    assert "Please change these passwords and keys as soon as this request is closed (SLA §4.3)." in text
    assert "change these passwords" not in reply(clf, decision())


def test_attachment_format_asks_to_archive_images(clf):
    text = reply(clf, decision(flags=["attachment_format"]))
    assert "pack them into a ZIP or RAR archive" in text


def test_one_part_per_finding_in_a_fixed_order(clf):
    d = decision("3.4.in.1", severity="critical", missing=["edition"],
                 delays=["missing_information", "not_reproducible"],
                 flags=["multiple_issues", "credentials_present", "attachment_format", "urgent_recovery",
                        "unofficial_channel"])
    parts = reply(clf, d).split("\n\n")
    markers = ["Hello,", "critical severity", "processed with priority", "more than one issue",
               "please send us the following", "does not happen every time", "change these passwords",
               "ZIP or RAR archive", "web form and live chat", "Best regards"]
    assert len(parts) == len(markers)
    for part, marker in zip(parts, markers):
        assert marker in part, (marker, part)


# ---------------------------------------------------------------- end to end: secrets never repeated
SECRET_REQUESTS = [
    ("Could you please log in to our server and tune MySQL and nginx for us? root / Kx93!pqLm on 185.12.44.9",
     ["Kx93!pqLm"]),
    ("The portal admin login does not work. Login: admin, password: Sommer2024! — please check.", ["Sommer2024!"]),
    ("Webhook https://acme-group.bitrix24.eu/rest/7/x8k2p0q9v1m3z7t4/crm.deal.update returns 401",
     ["x8k2p0q9v1m3z7t4"]),
    ("FTP access: ftp://deploy:Tr0ub4dor&3@ftp.kowalski-bud.pl the upload folder is full", ["Tr0ub4dor&3"]),
]


@pytest.mark.parametrize("text, secrets", SECRET_REQUESTS)
def test_reply_and_result_never_contain_a_secret(with_model, text, secrets):
    result = with_model.classify({"text": text, "id": "s1", "channel": "webform"})
    assert "credentials_present" in result.flags
    assert "change these passwords" in result.suggested_reply
    dumped = repr(result.to_dict())
    for secret in secrets:
        assert secret not in result.suggested_reply
        assert secret not in dumped


# ---------------------------------------------------------------- broken templates
def broken_rules(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of rules/ with one line of replies.yaml changed."""
    folder = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, folder)
    replies = folder / "replies.yaml"
    text = replies.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    replies.write_text(text.replace(old, new), encoding="utf-8")
    return folder


def test_unknown_placeholder_is_refused_with_E016(tmp_path):
    folder = broken_rules(tmp_path, '  closing: "Best regards,', '  closing: "Best regards from {agent_name},')
    line = next(i for i, ln in enumerate((folder / "replies.yaml").read_text().splitlines(), 1) if "closing:" in ln)
    with pytest.raises(RulesError) as exc:
        Classifier.load(rules_dir=folder, use_model=False)
    assert str(exc.value) == (f"[E016] {folder / 'replies.yaml'}:{line}: template templates.closing: unknown "
                              "placeholder {agent_name}. Allowed: severity, response_time, clause_id, "
                              "clause_text, category")


def test_missing_part_is_refused_with_E017(tmp_path):
    folder = broken_rules(tmp_path, "  multiple_issues: ", "  several_issues: ")
    with pytest.raises(RulesError) as exc:
        Classifier.load(rules_dir=folder, use_model=False)
    assert str(exc.value) == f"[E017] {folder / 'replies.yaml'}: reply templates missing for: multiple_issues"


def test_missing_severity_acknowledgement_is_refused_with_E017(tmp_path):
    folder = broken_rules(tmp_path, "    high: \"Thank you", "    urgent: \"Thank you")
    with pytest.raises(RulesError) as exc:
        check_templates(load_rules(folder).templates, folder / "replies.yaml")
    assert str(exc.value) == f"[E017] {folder / 'replies.yaml'}: reply templates missing for: acknowledgement.high"


def test_acknowledgement_as_plain_text_is_refused_with_E017(tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, folder)
    replies = folder / "replies.yaml"
    lines = replies.read_text(encoding="utf-8").splitlines()
    start = lines.index("  acknowledgement:")
    lines[start:start + 5] = ['  acknowledgement: "Thank you, we will respond within {response_time}."']
    replies.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RulesError) as exc:
        check_templates(load_rules(folder).templates, replies)
    assert str(exc.value) == (f"[E017] {replies}: reply templates missing for: acknowledgement.critical, "
                              "acknowledgement.high, acknowledgement.medium, acknowledgement.low")
