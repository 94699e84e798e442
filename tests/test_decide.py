"""Decide (SPEC §2–§7): category, missing information, delay reasons, flags,
response time, needs_review and the explanation.

Most tests run real requests through the bundled rules and then call
:func:`classifier.decide.decide` with *forced* model probabilities for the clause
under test, so a rule detector or a policy is checked on its own, whatever the
model would have said. Hand-built :class:`Hit` lists isolate single policies.
"""
from __future__ import annotations

import pytest

from classifier import spec
from classifier.classify import Classifier
from classifier.decide import DEFAULT_POLICY, Decision, Policy, decide
from classifier.features import Analysed
from classifier.matching import Hit
from classifier.normalise import normalise
from classifier.request import Request


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load()


@pytest.fixture(scope="module")
def rules_only() -> Classifier:
    return Classifier.load(use_model=False)


def analyse(clf: Classifier, text: str, **fields) -> Analysed:
    return next(clf.analyser.analyse([Request(text=text, **fields)]))


def forced(clause: str, severity: str = "medium") -> dict[str, dict[str, float]]:
    """Model probabilities that put all mass on one clause (and its category)."""
    return {"clause": {clause: 1.0}, "category": {spec.clause_category(clause): 1.0},
            "severity": {severity: 1.0}}


def decide_as(clf: Classifier, clause: str, text: str, severity: str = "medium", **fields) -> Decision:
    return decide(analyse(clf, text, **fields), forced(clause, severity))


def hand_built(text: str, hits: list[Hit] = (), **fields) -> Analysed:
    """An Analysed record with exactly the given hits (no rules run)."""
    return Analysed(Request(text=text, **fields), normalise(text), list(hits), text.lower().split())


def hit(rule_id: str, kind: str, label: str, text: str = "x", start: int = 0, weight: float = 1.0) -> Hit:
    return Hit(rule_id, kind, label, start, start + len(text), text, "prose", weight)


# A product error that states everything SPEC §5 asks for.
COMPLETE_PRODUCT_ERROR = (
    "Deleting a deal fails with 'Access denied' for every manager.\n"
    "How to reproduce:\n1. open CRM > Deals\n2. tick any deal\n3. press Delete\n"
    "Portal https://crm.nordwind-logistik.de, Bitrix24 Enterprise, main 24.300.100."
)


# ---------------------------------------------------------------- §5 missing info by category
def test_complete_product_error_misses_nothing(clf):
    d = decide_as(clf, "3.4.in.1", COMPLETE_PRODUCT_ERROR)
    assert d.category == "product_error"
    assert d.missing_info == []
    assert "missing_information" not in d.delay_reasons


@pytest.mark.parametrize("clause", ["3.5.in.2", "3.6.in.1", "4.5.out.1", "1.3.out.1"])
def test_development_general_other_never_miss_anything(clf, clause):
    d = decide_as(clf, clause, "Hi, the deal card does not open since yesterday, please help.")
    assert d.missing_info == []
    assert "missing_information" not in d.delay_reasons


@pytest.mark.parametrize("clause", ["3.1.in.2", "3.2.in.2"])
def test_installation_and_performance_never_miss_steps(clf, clause):
    d = decide_as(clf, clause, "The installation wizard hangs and the portal is very slow.")
    assert d.missing_info == ["url", "version", "edition"]
    assert d.delay_reasons[0] == "missing_information"


def test_product_error_and_updates_require_all_four(clf):
    for clause in ("3.4.in.1", "3.3.in.2"):
        d = decide_as(clf, clause, "The deal card does not open since yesterday.")
        assert d.missing_info == ["url", "version", "edition", "steps_to_reproduce"], clause


# ---------------------------------------------------------------- §5 what counts as present
def test_vendor_proxy_mail_and_bind_addresses_are_not_the_customers_url(clf):
    text = ("The update cannot reach update.bitrix.info through proxy.acme-corp.de; the push server "
            "listens on 0.0.0.0:8893 and mail goes via smtp.mailgun.org. I followed "
            "https://helpdesk.bitrix24.com/open/1234/ without success.")
    d = decide_as(clf, "3.3.in.2", text)
    assert "url" in d.missing_info


def test_customer_host_name_counts_as_url(clf):
    d = decide_as(clf, "3.3.in.2", "The update stops at the crm module on crm.kobra-tools.pl.")
    assert "url" not in d.missing_info


def test_php_and_mysql_versions_are_not_the_product_version(clf):
    d = decide_as(clf, "3.4.in.1", "After moving to PHP 8.1 and MySQL 8.0.35 the deal list is empty.")
    assert "version" in d.missing_info
    d = decide_as(clf, "3.4.in.1", "After moving to main 24.300.100 the deal list is empty.")
    assert "version" not in d.missing_info


def test_business_process_is_not_an_edition(clf):
    d = decide_as(clf, "3.4.in.1", "Our business process for invoice approval stopped starting; "
                                    "we are a small enterprise and use standard fields only.")
    assert "edition" in d.missing_info
    d = decide_as(clf, "3.4.in.1", "Invoice approval stopped starting. We have the Business edition.")
    assert "edition" not in d.missing_info


def test_navigation_path_is_steps(clf):
    d = decide_as(clf, "3.4.in.1", "Go to CRM > Deals > Delete and the page shows an error.")
    assert "steps_to_reproduce" not in d.missing_info


def test_numbered_list_is_steps(clf):
    d = decide_as(clf, "3.4.in.1", "The import fails.\n1. open Contacts\n2. upload the CSV\n3. press Import")
    assert "steps_to_reproduce" not in d.missing_info


def test_a_single_action_is_not_steps(clf):
    d = decide_as(clf, "3.4.in.1", "When I click Save the deal page freezes.")
    assert "steps_to_reproduce" in d.missing_info


def test_cloud_portal_address_is_never_asked_for_a_version(clf):
    d = decide_as(clf, "3.4.in.1", "The task list on trident-marine.bitrix24.de is empty since this morning.")
    assert "version" not in d.missing_info
    assert "url" not in d.missing_info
    assert d.explanation["cloud_portal"] is True


def test_saying_cloud_without_a_portal_address_still_needs_a_version(clf):
    # SPEC §5: only a bitrix24.* address or product: cloud makes a request a cloud portal
    d = decide_as(clf, "3.4.in.1", "We are on the Professional plan and the task list is empty since today.")
    assert "version" in d.missing_info
    assert d.explanation["cloud_portal"] is False


def test_product_cloud_field_is_never_asked_for_a_version(clf):
    text = "The task list is empty since this morning."
    assert "version" in decide_as(clf, "3.4.in.1", text).missing_info
    d = decide_as(clf, "3.4.in.1", text, product="cloud")
    assert d.missing_info == ["url", "edition", "steps_to_reproduce"]


# ---------------------------------------------------------------- §6 delay reasons
def test_out_of_scope_delay_iff_scope_out(clf):
    text = "Could you please log in to our server and tune MySQL and nginx for us?"
    out = decide_as(clf, "3.2.out.1", text)
    assert out.scope == "out_of_scope" and "out_of_scope" in out.delay_reasons
    inside = decide_as(clf, "3.2.in.2", text)
    assert inside.scope == "in_scope" and "out_of_scope" not in inside.delay_reasons


def test_feature_request_requires_custom_improvement(clf):
    d = decide_as(clf, "3.6.in.4", "It would be great if the Kanban in Tasks showed the planned hours per column.",
                  severity="low")
    assert d.delay_reasons == ["requires_custom_improvement"]
    assert d.scope == "in_scope"


@pytest.mark.parametrize("clause", ["3.6.in.4", "3.5.out.4", "3.5.out.6", "3.2.out.3", "1.4.out.1"])
def test_custom_improvement_follows_the_clause_without_any_rule(clause):
    d = decide(hand_built("please add this", []), forced(clause, "low"))
    assert "requires_custom_improvement" in d.delay_reasons
    assert "requires_custom_improvement" not in decide(hand_built("please add this", []),
                                                       forced("3.6.in.1", "low")).delay_reasons


def test_cloud_plan_with_php_ini_is_misleading(clf):
    d = decide_as(clf, "3.4.in.1", "Our portal on the Standard plan shows errors; I raised memory_limit in php.ini "
                                   "and it did not help.")
    assert "misleading_information" in d.delay_reasons
    assert d.explanation["misleading"] == ["cloud portal with server-side files or access"]


def test_product_cloud_with_self_hosted_text_is_misleading(clf):
    text = "On our own server the admin page is broken since the weekend."
    assert "misleading_information" not in decide_as(clf, "3.4.in.1", text).delay_reasons
    d = decide_as(clf, "3.4.in.1", text, product="cloud")
    assert "misleading_information" in d.delay_reasons
    assert "product field says cloud, the text a self-hosted installation" in d.explanation["misleading"]


def test_missing_information_follows_missing_info_exactly(clf):
    """Hand-built: no info hits -> everything missing; all four present -> nothing."""
    bare = decide(hand_built("deal card broken"), forced("3.4.in.1"))
    assert bare.missing_info == list(spec.MISSING_ITEMS)
    assert "missing_information" in bare.delay_reasons
    full = decide(hand_built("deal card broken", [hit("u", "info", "url"), hit("v", "info", "version"),
                                                  hit("e", "info", "edition"), hit("s", "info", "steps_to_reproduce")]),
                  forced("3.4.in.1"))
    assert full.missing_info == [] and "missing_information" not in full.delay_reasons


def test_not_item_hit_cancels_only_the_hit_it_overlaps():
    hits = [hit("info.url.host_name", "info", "url", "proxy.acme.de", start=10),
            hit("info.not_url.infrastructure", "info", "not_url", "proxy.acme.de", start=10)]
    assert "url" in decide(hand_built("x" * 40, hits), forced("3.4.in.1")).missing_info
    hits.append(hit("info.url.host_name", "info", "url", "crm.acme.de", start=30))
    assert "url" not in decide(hand_built("x" * 50, hits), forced("3.4.in.1")).missing_info


# ---------------------------------------------------------------- §7 flags from fields
@pytest.mark.parametrize("channel, flagged", [("email", True), ("other", True), ("webform", False),
                                              ("live_chat", False), (None, False)])
def test_unofficial_channel_comes_from_the_channel_field(clf, channel, flagged):
    d = decide_as(clf, "3.6.in.1", "How do I set working hours in open channels?", channel=channel)
    assert ("unofficial_channel" in d.flags) is flagged


def test_unofficial_channel_is_not_read_from_the_text(clf):
    d = decide_as(clf, "3.6.in.1", "I am writing by e-mail because the web form does not load. "
                                   "How do I set working hours?", channel="webform")
    assert "unofficial_channel" not in d.flags


@pytest.mark.parametrize("names, flagged", [
    (("screen.BMP",), True), (("scan.tiff",), True), (("IMG_2041.HEIC",), True), (("photo.Tif",), True),
    (("screenshots.zip",), False), (("screen.png", "error.JPG", "anim.gif"), False),
    (("bmp",), False), (("report.bmp.zip",), False),
])
def test_attachment_format(clf, names, flagged):
    d = decide_as(clf, "3.4.in.1", "The deal card shows an error, screenshots attached.", attachments=names)
    assert ("attachment_format" in d.flags) is flagged
    if flagged:
        assert d.explanation["bad_attachments"] == list(names)


def test_credentials_present_when_a_password_is_pasted(clf):
    d = decide_as(clf, "3.4.in.1", "Please check the admin panel yourself, login admin password: Kx93!pqLm")
    assert "credentials_present" in d.flags
    assert d.explanation["masked_secrets"] == 1
    clean = decide_as(clf, "3.4.in.1", "Please check the admin panel yourself, the password reset mail never arrives.")
    assert "credentials_present" not in clean.flags


# ---------------------------------------------------------------- §4 urgent recovery, response time
def test_critical_is_urgent_recovery(clf):
    d = decide_as(clf, "3.4.in.1", "Nobody can log in to the portal since 06:40.", severity="critical")
    assert d.severity == "critical" and "urgent_recovery" in d.flags


def test_hacked_site_is_urgent_recovery_below_critical(clf):
    d = decide_as(clf, "3.4.in.1", "Our site was hacked tonight, there is a casino banner on the main page.",
                  severity="high")
    assert d.severity == "high" and "urgent_recovery" in d.flags
    assert d.explanation["policy"]["urgent_recovery"] == "a flag rule fired (explanation.rules)"


@pytest.mark.parametrize("severity, text", [
    ("low", "After last year's phishing mails we want two-step login for everyone. How do we make it mandatory?"),
    ("low", "We switched CRM to simple mode and the leads disappeared from the menu. Is that expected?"),
    ("medium", "Two deals from March disappeared for one manager; the others see theirs. We can re-enter them."),
])
def test_no_urgent_recovery_without_a_project_to_bring_back(clf, severity, text):
    # the recovery rule fires on these words, but a question (low) or one feature broken with a
    # workaround (medium) is no project to bring back (SPEC §7)
    analysed = analyse(clf, text)
    assert "flag.urgent_recovery" in {h.rule_id for h in analysed.hits}
    d = decide(analysed, forced("3.6.in.1" if severity == "low" else "3.4.in.1", severity))
    assert "urgent_recovery" not in d.flags
    assert d.explanation["policy"]["urgent_recovery"] == f"no: severity {severity}, no project to bring back"


def test_an_update_that_left_key_parts_broken_is_urgent_recovery(clf):
    text = "Since Friday's update the CRM throws 'Unknown column CATEGORY_ID' on every deal; sales cannot work."
    d = decide_as(clf, "3.3.in.2", text, severity="high")
    assert "urgent_recovery" in d.flags
    assert d.explanation["policy"]["urgent_recovery"] == "an update left key parts broken (3.3.in.2, severity high)"
    # the same failure told of another clause at that severity is one broken function
    assert "urgent_recovery" not in decide_as(clf, "3.4.in.1", text, severity="high").flags


def test_slowness_is_not_urgent_recovery(clf):
    d = decide_as(clf, "3.2.in.2", "The deal list takes 20 seconds to load for all managers.", severity="high")
    assert "urgent_recovery" not in d.flags


@pytest.mark.parametrize("severity, hours", [("critical", 1), ("high", 1), ("medium", 24), ("low", 72)])
def test_response_time_hours_per_severity(clf, severity, hours):
    result = clf.classify({"text": "The deal card shows an error.", "id": "t"})
    assert spec.RESPONSE_TIME_HOURS[result.severity] == result.response_time_hours
    d = decide(hand_built("deal card broken"), forced("3.4.in.1", severity))
    assert d.severity == severity
    assert spec.RESPONSE_TIME_HOURS[d.severity] == hours


# ---------------------------------------------------------------- confidence and needs_review
def test_low_confidence_needs_review():
    probas = {"clause": {"3.4.in.1": 0.4, "3.6.in.1": 0.35, "3.5.in.2": 0.25},
              "category": {"product_error": 0.4, "general": 0.35, "development": 0.25},
              "severity": {"medium": 1.0}}
    d = decide(hand_built("deal card broken"), probas)
    assert d.confidence < DEFAULT_POLICY.review_below
    assert d.needs_review
    assert d.review_reasons == [f"confidence {d.confidence:.2f} below {DEFAULT_POLICY.review_below}"]


def test_confident_agreeing_decision_needs_no_review():
    hits = [hit("3.4.in.1", "clause", "3.4.in.1", "does not open", weight=0.6)]
    d = decide(hand_built("deal card does not open", hits), forced("3.4.in.1"))
    assert d.confidence == 1.0
    assert not d.needs_review and d.review_reasons == []


def test_rule_model_disagreement_needs_review():
    hits = [hit("3.5.out.6", "clause", "3.5.out.6", "payment module", weight=0.9)]
    d = decide(hand_built("custom payment module", hits), forced("3.4.in.1"))
    assert d.category == "product_error"
    assert d.needs_review
    assert "rules point to development (3.5.out.6), the model to product_error" in d.review_reasons


def test_review_threshold_is_the_policy_value():
    probas = {"clause": {"3.4.in.1": 0.6, "3.6.in.1": 0.4}, "category": {"product_error": 0.6, "general": 0.4},
              "severity": {"low": 1.0}}
    a = hand_built("deal card broken")
    assert not decide(a, probas).needs_review
    assert decide(a, probas, policy=Policy(review_below=0.7)).needs_review


# ---------------------------------------------------------------- modes
def test_rules_mode_works_without_a_model(rules_only):
    assert rules_only.model is None
    result = rules_only.classify("We need a custom payment module for PayU with recurring billing. "
                                 "Can your developers write it?")
    assert result.explanation["model"] == {}
    assert result.explanation["policy"]["clause"] in ("rules", "rules-fallback")
    assert result.category in spec.CATEGORIES


def test_rules_mode_ignores_given_probabilities():
    hits = [hit("3.5.out.6", "clause", "3.5.out.6", "payment module", weight=0.9)]
    d = decide(hand_built("custom payment module", hits), forced("3.4.in.1"), mode="rules")
    assert d.clause == "3.5.out.6" and d.explanation["policy"]["clause"] == "rules"
    assert d.explanation["model"] == {}


def test_rules_mode_falls_back_to_general_question():
    d = decide(hand_built("hello"), None, mode="rules")
    assert (d.clause, d.severity) == ("3.6.in.1", "low")
    assert d.explanation["policy"] == {"clause": "rules-fallback", "severity": "rules-fallback", "rule_weight": 1.0}


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match=r"^mode='both' is not allowed\. Possible values: \['combined', 'rules', 'model'\]$"):
        decide(hand_built("hello"), None, mode="both")


# ---------------------------------------------------------------- explanation
def test_explanation_lists_rules_with_matched_words_and_model_top_labels(clf):
    result = clf.classify({"text": "Our site was hacked tonight, there is a casino banner on the main page. "
                                   "PHP 8.1 on our own server.", "id": "x"})
    rules = {r["id"]: r for r in result.explanation["rules"]}
    assert rules["flag.urgent_recovery"]["matched"] == ["hacked"]
    assert rules["flag.urgent_recovery"]["kind"] == "flag"
    assert rules["info.not_version.third_party"]["matched"] == ["PHP 8.1"]
    model = result.explanation["model"]
    assert set(model) == {"category", "clause", "severity"}
    for name, top in model.items():
        assert 1 <= len(top) <= 3
        probs = [t["probability"] for t in top]
        assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
    assert model["category"][0]["label"] in spec.CATEGORIES


def test_explanation_clause_scores_follow_the_policy_formula():
    hits = [hit("3.5.out.6", "clause", "3.5.out.6", "payment module", weight=0.5)]
    w = 0.3  # a policy that gives rule evidence a share (the default gives it none)
    d = decide(hand_built("custom payment module", hits), forced("3.4.in.1"),
               policy=Policy(rule_weight=w, category_weight=0.0))
    assert d.explanation["clause_scores"] == {"3.4.in.1": round(1 - w, 4), "3.5.out.6": round(w * 0.5, 4)}
    assert d.explanation["policy"]["rule_weight"] == w
    assert d.clauses == ["3.4.in.1", "3.5.out.6"]
    # with the default policy the clause rule is cited but adds nothing to the score
    d = decide(hand_built("custom payment module", hits), forced("3.4.in.1"))
    assert d.explanation["clause_scores"]["3.4.in.1"] == round(1 - DEFAULT_POLICY.rule_weight, 4)
    assert d.clauses == ["3.4.in.1", "3.5.out.6"]
