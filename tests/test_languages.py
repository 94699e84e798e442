"""Requests in the customer's language (SPEC §9): the language is given or detected from
the prose, each language is read by its own pipeline, replies come in that language, an
unsupported language goes to review, and a new language is only data (a language pack).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from classifier import batch
from classifier.classify import Classifier
from classifier.cli import main
from classifier.rules import load_rules
from classifier.errors import RulesError
from classifier.features import Analyser
from classifier.language import LanguageDetector, prose_for_detection
from classifier.normalise import normalise
from classifier.request import Request
from classifier.result import result_schema
from classifier.rules import DEFAULT_RULES_DIR, load_rules

RU_SITE_DOWN = ("Здравствуйте! С утра портал crm.stroymash-ural.ru не открывается ни у кого, выдаёт 502. "
                "Коробка, редакция Бизнес, версия 24.300.100. Срочно помогите!")
DE_KEY_ON_UPDATE = ("Guten Tag, beim Update bekommen wir die Meldung, dass unser Lizenzschlüssel ungültig ist. "
                    "Die Lizenz wurde letzte Woche verlängert. Portal: portal.baeckerei-huber.de, Business, "
                    "Version 24.100.0.")
DE_WITH_PASTED_ERROR = ("Hallo zusammen,\nseit heute Morgen zeigt unser Portal nur noch diese Meldung:\n"
                        "Fatal error: Uncaught Error: Call to undefined function Bitrix\\Main\\mb_substr() in "
                        "/home/bitrix/www/bitrix/modules/main/lib/text/encoding.php:45\n"
                        "Können Sie bitte nachsehen, woran das liegt? Danke!")


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load()


# ------------------------------------------------------------------ the language
def test_russian_and_german_requests_are_detected_and_read_in_their_language(clf):
    ru, de = clf.classify_many([{"text": RU_SITE_DOWN}, {"text": DE_KEY_ON_UPDATE}])
    assert (ru.language, ru.explanation["language"]) == ("ru", {"code": "ru", "source": "detected", "supported": True})
    assert ru.severity == "critical" and ru.category == "product_error"
    assert "severity.critical.site_down" in {r["id"] for r in ru.explanation["rules"]}
    assert de.language == "de"
    assert (de.category, de.clauses[0]["id"]) == ("updates", "3.3.in.1")


def test_a_pasted_english_error_does_not_make_a_german_request_english():
    prose = prose_for_detection(normalise(DE_WITH_PASTED_ERROR))
    assert "Uncaught" not in prose and "Können Sie" in prose
    assert LanguageDetector(["en", "de", "ru"]).language_of(normalise(DE_WITH_PASTED_ERROR)).code == "de"


def test_short_english_sentences_stay_english(clf):
    texts = ["Our freelancer's module shows wrong totals, is it a bug in his code?",
             "installer hangs on 'Installing module: Search' forever, what is wrong??",
             "nginx + php-fpm or apache, which one is faster for the bitrix24 box?"]
    assert [r.language for r in clf.classify_many(texts)] == ["en", "en", "en"]


def test_the_language_field_wins_over_detection_and_accepts_a_region(clf):
    given = clf.classify({"text": "Portal is down for everyone since 8:00", "language": "pt-BR"})
    assert given.language == "pt" and given.explanation["language"]["source"] == "given"
    assert given.suggested_reply.startswith(load_rules().languages["pt"].templates["greeting"])
    # a language without a pack: read with the English rules, sent to review, replied to in English
    other = clf.classify({"text": "Portal is down for everyone since 8:00", "language": "it"})
    assert other.language == "it" and other.explanation["language"]["supported"] is False
    assert other.needs_review and any("no language pack" in r for r in other.explanation["review_reasons"])
    assert other.suggested_reply.startswith("Hello")


def test_a_bad_language_code_is_an_error_row_and_the_others_are_classified(clf):
    results = list(clf.classify_many([{"id": "a", "text": "Portal down", "language": "Deutsch"},
                                 {"id": "b", "text": RU_SITE_DOWN}]))
    assert results[0].error is not None and "E034" in results[0].error["message"]
    assert results[0].error["field"] == "language"
    assert results[1].ok and results[1].language == "ru"


def test_an_unsupported_language_is_still_classified_and_goes_to_review(clf):
    uk = clf.classify("Добрий день! Портал не відкривається у всіх співробітників з самого ранку, "
                      "помилка 502. Допоможіть, будь ласка, терміново.")
    assert uk.language == "uk" and uk.explanation["language"]["supported"] is False
    assert uk.needs_review
    assert uk.suggested_reply.startswith("Hello")
    # the model and the language-independent rules (addresses, flags) still work
    assert uk.category is not None and uk.severity is not None


# ------------------------------------------------------------------ replies
def test_replies_are_written_in_the_request_language(clf):
    ru, de = clf.classify_many([{"text": RU_SITE_DOWN}, {"text": DE_KEY_ON_UPDATE}])
    templates = load_rules().languages
    assert ru.suggested_reply.startswith(templates["ru"].templates["greeting"])
    assert "1 hour" not in ru.suggested_reply and "hours" not in ru.suggested_reply
    assert de.suggested_reply.startswith(templates["de"].templates["greeting"])
    assert "Stunden" in de.suggested_reply or "Stunde" in de.suggested_reply


def test_language_is_in_the_json_schema_and_the_csv(clf, tmp_path):
    result = clf.classify(RU_SITE_DOWN).to_dict()
    jsonschema.validate(result, result_schema())
    assert result["language"] == "ru"
    assert "language" in batch.CSV_COLUMNS and batch.csv_row(clf.classify(RU_SITE_DOWN))["language"] == "ru"


def test_a_russian_password_is_masked_before_it_reaches_the_output(clf):
    res = clf.classify({"text": "Не могу зайти в админку, пароль от админки: Zx8!pQr2, логин admin. "
                                "Портал crm.example.ru", "language": "ru"}, include_text=True)
    assert "Zx8!pQr2" not in json.dumps(res.to_dict(), ensure_ascii=False)
    assert "credentials_present" in res.flags


# ------------------------------------------------------------------ a new language is data
TOY_PACK = """\
language: zz
name: Toy
tokenizer: xx
word_order: free
words:
  WHOLE_SERVICE: [portalo]
  DOWN: [mortas]
  UPDATE_KEY: [slosilo]
  KEY_PROBLEM: [malbona]
  PRODUCT_UPDATE: [gxisdatigo]
examples:
  severity.critical.site_down:
    match: ["la portalo mortas", "portalo mortas ekde la mateno"]
    no_match: ["la portalo funkcias"]
templates:
  greeting: "Saluton,"
  closing: "Amike,\\nSubteno"
  response_time: {"1": "unu horo", "24": "24 horoj", "72": "72 horoj"}
"""


@pytest.fixture()
def toy_rules(tmp_path: Path) -> Path:
    folder = Path(shutil.copytree(DEFAULT_RULES_DIR, tmp_path / "rules"))
    (folder / "languages" / "zz").mkdir()
    (folder / "languages" / "zz" / "toy.yaml").write_text(TOY_PACK, encoding="utf-8")
    return folder


def test_a_toy_language_added_as_a_pack_classifies_and_replies_in_it(toy_rules):
    toy = Classifier.load(rules_dir=toy_rules)
    plain = Classifier.load()
    request = {"text": "Helpu! La portalo mortas, la slosilo estas malbona post la gxisdatigo.", "language": "zz"}
    res, before = toy.classify(request), plain.classify(request)
    fired = {r["id"] for r in res.explanation["rules"]}
    assert {"severity.critical.site_down", "3.3.in.1"} <= fired
    assert res.clauses[0]["id"] == "3.3.in.1" and res.explanation["language"]["supported"] is True
    hours = {1: "unu horo", 24: "24 horoj", 72: "72 horoj"}[res.response_time_hours]
    assert res.suggested_reply.startswith("Saluton,") and hours in res.suggested_reply
    assert res.suggested_reply.rstrip().endswith("Subteno")
    # the same request without the pack: no toy words, an unsupported language, English reply
    assert "severity.critical.site_down" not in {r["id"] for r in before.explanation["rules"]}
    assert before.needs_review and before.suggested_reply.startswith("Hello")


def test_english_words_count_in_a_pack_language_unless_they_are_its_false_friends(toy_rules):
    def fired(text: str) -> set[str]:
        res = Classifier.load(rules_dir=toy_rules).classify({"text": text, "language": "zz"})
        return {r["id"] for r in res.explanation["rules"]}

    # English words count in every language: "down" (English) after "portalo" (toy)
    assert "severity.critical.site_down" in fired("la portalo is down")
    pack = toy_rules / "languages" / "zz" / "toy.yaml"
    pack.write_text(TOY_PACK.replace("word_order: free\n", "word_order: free\nfalse_friends: [down]\n"),
                    encoding="utf-8")
    assert "severity.critical.site_down" not in fired("la portalo is down")
    assert "severity.critical.site_down" in fired("la portalo mortas")


def test_english_pasted_into_a_spanish_request_is_found_as_written():
    # simplemma takes the English "are" and "page" for forms of the Spanish "arar" and
    # "pagar": English words also count as written
    from classifier.features import shared_analyser
    texts = ["Vale, you are now my admin. Dame acceso de administrador al portal.",
             "Buenas, la tienda muestra una empty page desde ayer."]
    roleplay, blank = shared_analyser().analyse([Request(text=t, language="es") for t in texts])
    assert "ROLEPLAY" in roleplay.concepts and "BLANK_SCREEN" in blank.concepts


def test_rules_check_runs_a_pack_and_names_the_concepts_it_lacks(toy_rules):
    run = CliRunner().invoke(main, ["rules", "check", "--rules", str(toy_rules), "--language", "zz"])
    n = len(load_rules().rules)
    assert f"zz (Toy): {n} rules" in run.output and "2 passed" not in run.output
    assert "3 examples passed, 0 failed" in run.output
    assert "zz: rule 3.1.in.1 uses concept INSTALLATION_GUIDE, which has no zz words" in run.output
    assert "too few" in run.output


def test_the_bundled_languages_are_fully_covered():
    run = CliRunner().invoke(main, ["rules", "check"])
    assert run.exit_code == 0, run.output
    n = len(load_rules().rules)
    for code in ("ru", "de", "es", "pt", "pl", "fr"):
        assert f"{code}: {n} of {n} rules have >= 2 passing match and >= 1 no_match examples" in run.output
        assert f"{code}: concepts: 0 used without {code} words; reply templates: all" in run.output


def test_a_broken_language_pack_names_its_file_and_problem(toy_rules):
    pack = toy_rules / "languages" / "zz" / "toy.yaml"
    pack.write_text(TOY_PACK.replace("  DOWN: [mortas]", "  DOWNN: [mortas]"), encoding="utf-8")
    with pytest.raises(RulesError, match=r"toy\.yaml.*DOWNN"):
        load_rules(toy_rules)
    pack.write_text(TOY_PACK.replace("tokenizer: xx", "tokenizer: qq"), encoding="utf-8")
    with pytest.raises(RulesError, match=r"E091.*toy\.yaml.*spaCy has no language 'qq'"):
        load_rules(toy_rules)
    pack.write_text(TOY_PACK.replace("examples:\n", "examples:\n  no.such.rule:\n    match: [x]\n"), encoding="utf-8")
    with pytest.raises(RulesError, match=r"E091.*no\.such\.rule"):
        load_rules(toy_rules)


#: the toy language's reply header, sign-off and support speaker, as its pack would give them
TOY_SEGMENTS = """\
language: zz
segments:
  reply_headers: ["La … skribis:"]
  sign_offs: [amike …]
  support_speakers: [subtenanto]
"""
#: three requests whose "portalo mortas" (the portal is down) stands in a reply the customer
#: quotes, in a signature and on the support side of a chat: none is the customer saying it now
TOY_QUOTING = [
    ("La kalendaro montras malgxustan horon.\n\nLa 3an de junio, Anna skribis:\nla portalo mortas ekde la mateno",
     "la portalo mortas ekde la mateno", "quoted"),
    ("La kalendaro montras malgxustan horon.\n\nAmike, Anna\nPortalo Mortas Kompanio",
     "Portalo Mortas Kompanio", "signature"),
    ("[10:42] Subtenanto: cxu la portalo mortas?\n[10:43] Anna: ne, nur la kalendaro",
     "cxu la portalo mortas?", "quoted"),
]


def test_a_pack_s_reply_header_sign_off_and_chat_speaker_mark_what_the_customer_did_not_write_now(toy_rules):
    def read(folder: Path) -> list:
        return list(Analyser(folder).analyse([Request(text=text, language="zz") for text, _, _ in TOY_QUOTING]))

    def kind_of(analysed, fragment: str) -> str:
        at = analysed.normalised.text.index(fragment)
        return next(s.kind for s in analysed.normalised.segments if s.start <= at < s.end)

    before = read(toy_rules)
    (toy_rules / "languages" / "zz" / "segments.yaml").write_text(TOY_SEGMENTS, encoding="utf-8")
    after = read(toy_rules)
    for (_, fragment, kind), was, now in zip(TOY_QUOTING, before, after):
        # without the pack's words the line is the customer's own, and the portal is down ...
        assert kind_of(was, fragment) == "prose"
        assert "severity.critical.site_down" in {h.rule_id for h in was.hits}
        # ... with them, it is a quote, a signature or the support side, which the rule does not read
        assert kind_of(now, fragment) == kind
        assert "severity.critical.site_down" not in {h.rule_id for h in now.hits}


def test_a_broken_segments_entry_names_its_file_and_problem(toy_rules):
    path = toy_rules / "languages" / "zz" / "segments.yaml"
    path.write_text(TOY_SEGMENTS.replace("[subtenanto]", "[subtenanto, 'subteno:']"), encoding="utf-8")
    with pytest.raises(RulesError) as info:
        load_rules(toy_rules)
    assert str(info.value) == (f"[E092] {path}:5: segments.support_speakers[1] 'subteno:': write the name without the "
                               "colon that follows it. See docs/rules.md, \"Words that cut a request into parts\".")
    path.write_text(TOY_SEGMENTS.replace("sign_offs:", "signoffs:"), encoding="utf-8")
    with pytest.raises(RulesError, match=r"^\[E092\] .*segments\.yaml:4: segments\.signoffs: unknown key"):
        load_rules(toy_rules)


def test_an_out_of_scope_reply_quotes_the_sla_in_the_request_language(clf):
    res = clf.classify("Добрый день. Напишите, пожалуйста, для нашего сайта модуль калькулятора доставки "
                       "по тарифам СДЭК, с выводом в корзине. Бюджет есть.")
    clause = res.clauses[0]["id"]
    assert res.scope == "out_of_scope" and res.language == "ru"
    translated = load_rules().languages["ru"].sla[clause].rstrip(".")
    assert translated in res.suggested_reply
    assert res.clauses[0]["sla"] not in res.suggested_reply  # the English text stays in the explanation


def test_a_failing_pack_example_is_reported_with_its_file_and_line(toy_rules):
    pack = toy_rules / "languages" / "zz" / "toy.yaml"
    pack.write_text(TOY_PACK.replace('no_match: ["la portalo funkcias"]', 'no_match: ["la portalo mortas hodiau"]'),
                    encoding="utf-8")
    line = next(i for i, text in enumerate(pack.read_text(encoding="utf-8").splitlines(), 1) if "hodiau" in text)
    run = CliRunner().invoke(main, ["rules", "check", "--rules", str(toy_rules), "--language", "zz"])
    assert run.exit_code == 1
    assert (f"FAIL {pack}:{line}: rule severity.critical.site_down: example should not match but did: "
            "'la portalo mortas hodiau'") in run.output


# ------------------------------------------------------------------ Spanish, Portuguese, Polish, French
#: per language: a portal down for everyone (self-hosted, edition and version given), and a
#: request for custom development (out of scope), as customers of that market write them
LATER = {
    "es": ("Buenos días, desde las 8 el portal intranet.transportes-olmedo.es no abre para nadie, sale un error 502. "
           "Versión en servidor propio, edición Business, main 24.300.100. ¡Es urgente, toda la oficina está parada!",
           "Hola, necesitamos que nos desarrollen un módulo a medida para calcular los portes de Seur en el carrito "
           "de nuestra tienda. ¿Cuánto nos costaría?"),
    "pt": ("Bom dia, o portal crm.madeireira-bonfim.com.br está fora do ar para todo mundo desde cedo, aparece erro 502. "
           "Versão box, edição Business, main 24.300.100. Urgente, ninguém consegue trabalhar!",
           "Olá, vocês poderiam desenvolver pra gente um módulo personalizado que calcule o frete dos Correios "
           "no carrinho da nossa loja? Quanto custaria?"),
    "pl": ("Dzień dobry, od rana portal intranet.hurtownia-mazur.pl nie działa u nikogo, wyświetla się błąd 502. "
           "Wersja pudełkowa, edycja Business, main 24.300.100. Bardzo pilne, cała firma stoi!",
           "Dzień dobry, czy mogą Państwo napisać dla nas moduł na zamówienie, który policzy koszt wysyłki InPost "
           "w koszyku naszego sklepu? Ile by to kosztowało?"),
    "fr": ("Bonjour, depuis ce matin le portail intranet.menuiserie-garnier.fr ne s'ouvre plus pour personne, erreur 502. "
           "Version boîte, édition Business, main 24.300.100. C'est urgent, toute l'entreprise est bloquée !",
           "Bonjour, pourriez-vous nous développer un module sur mesure qui calcule les frais de port Colissimo "
           "dans le panier de notre boutique ? Combien cela coûterait-il ?"),
}


@pytest.mark.parametrize("code", sorted(LATER))
def test_a_site_down_request_is_read_and_answered_in_its_language(clf, code):
    down, _ = LATER[code]
    res = clf.classify(down)
    assert res.explanation["language"] == {"code": code, "source": "detected", "supported": True}
    assert res.severity == "critical" and res.response_time_hours == 1
    assert "severity.critical.site_down" in {r["id"] for r in res.explanation["rules"]}
    assert not {"url", "version", "edition"} & set(res.missing_info)
    pack = load_rules().languages[code]
    assert res.suggested_reply.startswith(pack.templates["greeting"])
    assert pack.templates["response_time"]["1"] in res.suggested_reply


@pytest.mark.parametrize("code", sorted(LATER))
def test_custom_development_is_out_of_scope_and_the_reply_quotes_the_sla_in_the_language(clf, code):
    _, custom = LATER[code]
    res = clf.classify(custom)
    assert res.language == code and res.scope == "out_of_scope" and res.category == "development"
    clause = res.clauses[0]["id"]
    translated = load_rules().languages[code].sla.get(clause)
    assert translated and translated.rstrip(".") in res.suggested_reply


@pytest.mark.parametrize("text, secret", [
    ("No puedo entrar al panel, la contraseña del admin es Qm7!rt22, usuario admin.", "Qm7!rt22"),
    ("no puedo entrar, contrasena: Pk9#lo44 usuario admin", "Pk9#lo44"),
    ("Não consigo entrar no painel, senha do admin: Vb3$kk81, usuário admin.", "Vb3$kk81"),
    ("nao consigo acessar, a senha e Tg5!pp02", "Tg5!pp02"),
    ("Nie mogę zalogować się do panelu, hasło do admina: Lw8!zz31, login admin.", "Lw8!zz31"),
    ("nie moge sie zalogowac, haslo: Rr4#mn77, login admin", "Rr4#mn77"),
    ("Je n'arrive pas à me connecter, le mot de passe admin est Hq2!vv90, identifiant admin.", "Hq2!vv90"),
    ("impossible de me connecter, mot de passe : Jd6#ww45 login admin", "Jd6#ww45"),
])
def test_passwords_are_masked_as_each_language_writes_them(clf, text, secret):
    res = clf.classify(text, include_text=True)
    assert secret not in json.dumps(res.to_dict(), ensure_ascii=False)
    assert "credentials_present" in res.flags


@pytest.mark.parametrize("text", [
    "En el CRM abro una negociación, luego hago clic en Editar y después en Guardar: sale un error y no guarda nada.",
    "No CRM eu abro um negócio, depois clico em Editar e em seguida em Salvar: aparece um erro e nada é salvo.",
    "W CRM otwieram deal, potem klikam Edytuj, następnie Zapisz i pojawia się błąd, nic się nie zapisuje.",
    "Dans le CRM j'ouvre une affaire, ensuite je clique sur Modifier puis sur Enregistrer : une erreur s'affiche.",
])
def test_steps_told_in_order_count_as_steps_in_each_language(clf, text):
    res = clf.classify(text)
    assert "steps_to_reproduce" not in res.missing_info
    assert any(r["label"] == "steps_to_reproduce" for r in res.explanation["rules"])


def test_polish_inflected_forms_find_the_rules_words(clf):
    # "wersji pudełkowej", "serwerze", "zainstalować" are inflected; the rules name the lemmas
    res = clf.classify("Dzień dobry, czy jest instrukcja, jak zainstalować wersję pudełkową na naszym serwerze "
                       "z Debianem 12? Chcemy to zrobić krok po kroku.")
    assert res.language == "pl" and res.category == "installation"
    assert res.clauses[0]["id"] == "3.1.in.1"


def test_cyrillic_letters_are_counted_exactly_from_their_bytes():
    # the detector counts Cyrillic characters from their UTF-8 lead bytes: the count must be the
    # regex's for text mixing Cyrillic with Latin, Greek, Armenian, CJK, emoji and lone surrogates
    import random
    import re

    from classifier.language import _cyrillic_letters

    rng = random.Random(7)
    blocks = [(0x20, 0x7E), (0xC0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x500, 0x52F), (0x530, 0x58F),
              (0x4E00, 0x4E80), (0xD800, 0xD8FF), (0x1F600, 0x1F64F)]
    for _ in range(300):
        text = "".join(chr(rng.randint(*rng.choice(blocks))) for _ in range(rng.randint(0, 60)))
        assert _cyrillic_letters(text) == len(re.findall(r"[\u0400-\u04ff]", text)), repr(text)
