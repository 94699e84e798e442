"""Requests written the way real ones are (issue templates, Markdown, pasted commands,
links to other people's services): what SPEC §5 counts as present, and what rules read."""
from __future__ import annotations

import pytest

from classifier.classify import Classifier
from classifier.decide import decide
from classifier.request import Request

from test_decide import forced


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load()


def missing(clf: Classifier, text: str, clause: str = "3.4.in.1") -> list[str]:
    """missing_info when the request is taken as ``clause`` (so only §5 detection is tested)."""
    analysed = next(clf.analyser.analyse([Request(text=text)]))
    return decide(analysed, forced(clause)).missing_info


def fired(clf: Classifier, text: str) -> set[str]:
    return {h.rule_id for h in next(clf.analyser.analyse([Request(text=text)])).hits}


SITE = "Portal https://crm.kowalski-bud.pl, Business edition, main 24.300.100.\n"


def test_an_empty_steps_heading_of_a_template_is_no_steps(clf):
    text = SITE + "## Describe the bug\nThe deal list is empty.\n\n### Steps to reproduce\n\n### Expected behavior\nDeals are listed.\n"
    assert missing(clf, text) == ["steps_to_reproduce"]


def test_a_steps_heading_with_one_item_is_no_steps(clf):
    text = SITE + "Steps to Reproduce:\n1 Start the browser\n2\n3\nActual Results: it vanishes"
    assert missing(clf, text) == ["steps_to_reproduce"]


def test_a_list_of_actions_under_a_template_heading_is_steps(clf):
    text = SITE + "### Steps to reproduce\n1. Open CRM > Deals\n2. Tick two deals\n3. Press Delete\n"
    assert missing(clf, text) == []


def test_a_bulleted_list_that_is_no_actions_is_no_steps(clf):
    text = SITE + "The export is wrong. Given:\n- a field named PRICE_X\n- a limit of 10 characters\nthe column is cut."
    assert missing(clf, text) == ["steps_to_reproduce"]


def test_two_commands_typed_in_order_are_steps(clf):
    text = SITE + "The agent loses files:\n```shell\n$ docker compose up -d\n$ docker compose exec php ls /upload\nls: cannot access\n```"
    assert missing(clf, text) == []


def test_what_the_customer_already_tried_joined_by_but_is_no_steps(clf):
    text = SITE + "The card shows the button, but tapping it opens the app on the start page."
    assert missing(clf, text) == ["steps_to_reproduce"]


@pytest.mark.parametrize("address", [
    "git clone https://github.com/acme/b24-sdk.git", "screenshot: https://prnt.sc/a1b2c3",
    "the log is on https://pastebin.com/x7Yz9", "our flow https://acme.app.n8n.cloud/workflow/12 stops",
    "see https://apidocs.bitrix24.com/api-reference/crm/index.html", "the server listens on 0.0.0.0:8080",
])
def test_addresses_that_are_not_the_customers_site_do_not_count(clf, address):
    text = f"Deleting a deal fails. {address}. Business edition, main 24.300.100.\n1. open a deal\n2. press Delete"
    assert missing(clf, text) == ["url"]


def test_the_customers_own_address_beside_a_code_host_counts(clf):
    text = ("We cloned https://github.com/acme/b24-sdk.git and call our portal https://crm.acme-tools.de from it; "
            "deleting a deal fails. Business edition, main 24.300.100.\n1. open a deal\n2. press Delete")
    assert missing(clf, text) == []


@pytest.mark.parametrize("stated", ["Enterprise, main 24.100.0.", "(Business, main 24.300.100)",
                                    "Small Business 24.100.0 on our own server", "Enterprise 24.200.100"])
def test_editions_and_versions_as_real_requests_state_them(clf, stated):
    text = f"Portal https://crm.acme-tools.de. Deleting a deal fails. {stated}\n1. open a deal\n2. press Delete"
    assert missing(clf, text) == []


def test_version_of_the_product_on_bitrixenv_counts_in_russian(clf):
    text = ("Коробка «Энтерпрайз» 24.300.0 на BitrixEnv, сайт portal.kamvodokanal.ru. Сделка не удаляется.\n"
            "1. открыть сделку\n2. нажать Удалить")
    assert missing(clf, text) == []


def test_a_heading_does_not_fire_clause_rules(clf):
    body = "Deals are listed in the order they were created."
    assert fired(clf, "## Expected behavior\n## Actual behavior\n" + body) == fired(clf, body)
    # the same words as prose do fire a clause rule
    assert any(r.startswith("3.") for r in fired(clf, "Expected behavior was different.\n" + body))


def test_inline_code_is_not_read_by_clause_or_severity_rules(clf):
    assert {"3.4.in.1#down", "severity.critical.site_down"} <= fired(clf, "The log says portal down since 06:40.")
    assert fired(clf, "The log says `portal down since 06:40`.") == set()
