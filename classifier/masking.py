"""Mask secrets (SPEC §7 ``credentials_present``) before anything else sees the text.

Each pattern names the kind of secret it finds; only the secret part is replaced
by ``[MASKED]``, so "password: Qw7!mzP2" becomes "password: [MASKED]" and the
rest of the request still reads naturally for the rules and the model. Every
pattern is linear-time on long input (no quantifier nested in another that could
split a run two ways; tests/test_security.py checks the scaling). A run of 32+ hex
digits is masked whatever precedes it, so a full 40-character git commit hash is
masked too (it cannot be told from a webhook token or client secret); short hashes
are not. A UUID is an id, not a secret: it is masked only as the value of a
secret-naming word ("token: <uuid>") or as the path of a webhook URL. A dashed code
is a license key with a license word before it, or when it is long (4+ groups or 16+
characters): an SKU like AB12-CD34-EF56 and a MAC address are left alone. A base64
value is masked when it decodes to "user:password". The corpus the masker is measured
on is tests/fixtures/credentials.yaml (secrets and look-alikes).
"""
from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass, field

from .prefilter import Prefilter

MASK = "[MASKED]"

_KW_PASSWORD = (r"(?:password|passwort|passwd|pass(?:phrase|code)?|pwd|pw|mdp|kennwort|contrase(?:ñ|n)a|senha|"
                r"palavra[- ]passe|has(?:ł|l)(?:o|a|em)|парол(?:ь|я|ем)|parol|пасс(?:ворд)?|пасворд|mot[ -]de[ -]passe|"
                r"clave|secret|root pw)")
#: a password word: alone, after "_" (MAIL_PASSWORD), or ending a compound (PGPASSWORD,
#: Datenbankpasswort; the group "compound" takes part then; "abbreviation" for pwd, pw, mdp,
#: пасс opening an aside or a list item: "(pwd x)", ", pw x"). The look-ahead for the words'
#: first letters only makes the search faster.
_KW_START = (r"(?=[pmkcshпr])(?:(?:\b|(?<=_))(?:(?:(?<=[(,;])|(?<=[(,;] ))(?:pwd|pw|mdp|пасс)(?P<abbreviation>)|"
             + _KW_PASSWORD + r")"
             r"|(?<=[^\W\d_])(?P<compound>)(?:password|passwort|passwd|kennwort|пароль))\b")
_KW_ANYWHERE = re.compile(_KW_START, re.I)
_ACCESS_WORDS = re.compile(r"\b(?:ftp|sftp|ssh|rdp|remote desktop|anydesk|teamviewer|cpanel|plesk|ispmanager|"
                           r"control panel|admin panel|login|log in|logon|sign in|credentials|access|zugang|zugangsdaten|доступ|"
                           r"acceso|acesso|dostęp|user(?:name)?|benutzer|root|admin|server|vps|host)\b", re.I)

#: "password for the FTP", "contraseña del FTP", "пароль от FTP": up to three words naming what it opens
_FOR_WHAT = (r"(?:\s{1,3}(?:for|of|to|für|para|для|от|do|dla|de|du|del|al|da|das|dos|des|au|zum|zur|vom|von|na|od|"
             r"pour|в|на|к)(?:\s{1,3}[\w.@-]{1,60}){1,3}?"
             # ... or the account named after the word, as Romance languages and Polish put it:
             # "mot de passe admin est …", "senha root: …", "hasło admina: …"
             r"|\s{1,3}(?:admin\w{0,2}|administra\w{1,8}|root|ftp|sftp|ssh|mysql|db|bd|wifi|smtp|imap|e?-?mail|"
             r"portal\w{0,2}|portail|usuario|usuário|utilisateur|użytkownika|uzytkownika))?")
#: "password: x", "password = x": the value is a secret whatever it looks like
_STRONG_SEP = r"\s{0,3}(?:=>|:=|[:=])"
#: "password is x", "Passwort - x": only a value that looks made up (a digit or a symbol
#: in it) is a secret, so "the password is wrong" is not masked; a quoted value always is,
#: and so is a lone word closing an aside ("(the password is bluebird)") unless it says
#: something about the password ("(the password is wrong)")
_SAID_SEP = (r"\s{0,3}[-—–]|\s{1,3}(?:is|ist|lautet|hei(?:ß|ss)t|est|c'est|es|é|eh|e|jest|to|was|это|будет|"
             r"será|sera)\b:?")
#: ... and "password x" (not after a compound word: "HASHEDPASSWORD\nbitcoind_1")
_WEAK_SEP = _SAID_SEP + r"|(?(compound)(?!)|(?=\s))"


def _quoted(name: str) -> str:
    """A quoted value, the group ``name``: any quote mark opens it, the first quote mark after it closes it."""
    return rf"[\"'`«„“‘](?P<{name}>[^\n\"'`«»„“”‘’]{{1,200}})[\"'`»“”’](?!\w)"


#: a value that looks made up: a digit or a symbol in it
_MADE_UP = r"(?=[^\s\"'`»]{0,200}[\d!@#$%^&*_])"
#: a password given as a shell command's argument: 'quoted', "quoted" or bare (three groups)
_ARG = r"(?:'([^'\n]{1,200})'|\"([^\"\n]{1,200})\"|([^\s'\"]{1,200}))"
#: ... where a bare word may be prose ("net use Z: \\srv\share and then…"): quoted, or made up
_MADE_UP_ARG = r"(?:'([^'\n]{1,200})'|\"([^\"\n]{1,200})\"|(?=[^\s'\"]{0,200}[\d!@#$%^&*_])([^\s'\"-][^\s'\"]{0,199}))"
#: other options between a command and its password option
_OPTIONS = r"[^\n]{0,160}?\s"


def _literal_first(literal: str, rest: str, not_after: str = r"\w") -> str:
    """``literal`` (not preceded by a ``not_after`` character) then ``rest``: a regex that
    starts with a literal, which the regex engine searches for fast."""
    return re.escape(literal) + rf"(?<!{not_after}{re.escape(literal)})" + rest


#: a shell command, then what comes before its password
_COMMAND_LINES = [
    ("mysql", r"(?:dump|admin|import|check|pump|sh)?\b" + _OPTIONS + r"-p" + _ARG),  # -pSECRET (-p alone asks)
    ("mariadb", r"(?:-dump|-admin)?\b" + _OPTIONS + r"-p" + _ARG),
    ("sshpass", r"\s{1,3}-p\s{0,3}" + _ARG),
    ("mongo", r"(?:sh|dump|restore|export|import)?\b" + _OPTIONS + r"-p\s{1,3}" + _ARG),
    ("redis-cli", r"\b" + _OPTIONS + r"-a\s{1,3}" + _ARG),
    *((name, r"\b" + _OPTIONS + r"-P\s{0,3}" + _ARG) for name in ("sqlcmd", "osql", "bcp")),
    ("ldap", r"(?:search|add|modify|delete|passwd|whoami)\b" + _OPTIONS + r"-w\s{1,3}" + _ARG),
    *((name, r"\b" + _OPTIONS + r"-pw\s{1,3}" + _ARG) for name in ("plink", "pscp", "psftp")),
    *((name, r"\b" + _OPTIONS + r"[/-]p:" + _ARG) for name in ("xfreerdp", "freerdp")),
    *((name, r"\b" + _OPTIONS + r"-p\s{1,3}" + _ARG) for name in ("rdesktop", "docker login")),
    ("htpasswd", r"\s{1,3}-[a-zA-Z]{0,3}b[a-zA-Z]{0,3}\s{1,3}\S{1,200}\s{1,3}[^\s-]\S{0,100}\s{1,3}" + _MADE_UP_ARG),
    ("curl", r"\b" + _OPTIONS + r"(?:-u|-U|--user|--proxy-user)(?:\s{1,3}|=)?['\"]?[^\s:'\"]{1,100}:([^\s'\"]{1,200})"),
    ("lftp", r"\b" + _OPTIONS + r"-u\s{1,3}['\"]?[^\s,'\"]{1,100},([^\s'\"]{1,200})"),
    ("smbclient", r"\b" + _OPTIONS + r"(?:-U|--user)(?:\s{1,3}|=)['\"]?[^\s%'\"]{1,100}%([^\s'\"]{1,200})"),
    # net use Z: \\server\share SECRET /user:DOMAIN\user, or the password after /user
    *((name, r"\s{1,3}(?:[A-Za-z]:\s{1,3})?\\\\\S{1,200}\s{1,3}(?![/*])" + _MADE_UP_ARG) for name in ("net use", "NET USE")),
    *((name, r"\b" + _OPTIONS + r"(?i:/user:)\S{1,100}\s{1,3}(?![/*])" + _MADE_UP_ARG) for name in ("net use", "NET USE")),
    # --password SECRET (with "=" the password pattern has it)
    ("--", r"(?:password|passwd|pass)\s{1,3}" + _MADE_UP_ARG),
]
#: each command (not the end of a longer word or option) then its password
_COMMANDS = re.compile("|".join(_literal_first(name, rest, r"[\w-]") for name, rest in _COMMAND_LINES))
#: "first half", "zweite Hälfte", "вторая половина", "segunda mitad", "druga połowa",
#: "deuxième moitié", "part 2", "the rest": a piece of a password given in parts
_PART = (r"(?:\b(?:first|second|third|last|other|1st|2nd|3rd)\s{1,3}(?:half|part|piece)"
         r"|\b(?:part|half|teil|часть|parte|część|czesc|partie)\s{0,2}(?:#|№|nr\.?\s{0,2})?[1-4]\b"
         r"|\b(?:erste|zweite|dritte|letzte|andere)[rnms]?\s{1,3}(?:hälfte|haelfte|halfte|teil)"
         r"|\b(?:перв|втор|трет|последн|друг|оставш)\w{0,3}\s{1,3}(?:половин|част)\w{0,3}"
         r"|\b(?:primera|primeira|segunda|tercera|terceira|(?:ú|u)ltima|otra|outra)\s{1,3}(?:mitad|metade|parte)"
         r"|\b(?:pierwsz|drug|trzeci|ostatni)\w{0,2}\s{1,3}(?:po(?:ł|l)ow|cz(?:ę|e)(?:ś|s)(?:ć|c))\w{0,2}"
         r"|\b(?:premi(?:è|e)re|deuxi(?:è|e)me|seconde?|troisi(?:è|e)me|derni(?:è|e)re|autre)\s{1,3}(?:moiti(?:é|e)|partie)"
         r"|\b(?:the\s{1,3}rest|der\s{1,3}rest|остаток|el\s{1,3}resto|o\s{1,3}resto|reszta|le\s{1,3}reste))\b")
#: "the password comes in two lines", "пароль в двух строках": what announces a split value
_SPLIT = (r"\b(?:lines|zeilen|строк\w{0,2}|l(?:í|i)neas|linhas|lini(?:e|ach|ami)|lignes|parts|halves|teile|"
          r"hälften|част(?:и|ях)|partes|cz(?:ę|e)(?:ś|s)ci|parties|moiti(?:é|e)s)\b")
_KW_PHRASE = (r"(?:pass[ -]?phrase|passwortsatz|mnemonic(?:\s{1,3}phrase)?|(?:seed|recovery)\s{1,3}phrase|"
              r"кодов\w{0,3}\s{1,3}(?:фраз|слов)\w{0,2}|парольн\w{0,3}\s{1,3}фраз\w{0,2}|"
              r"frase\s{1,3}(?:de\s{1,3}(?:contrase(?:ñ|n)a|paso|acesso|acceso)|secreta|senha)|frase-senha|"
              r"fraza\s{1,3}(?:has(?:ł|l)a|dost(?:ę|e)pu)|phrase\s{1,3}(?:secr(?:è|e)te|de\s{1,3}passe))")
#: two to twelve words running to the end of the sentence or line: a passphrase
_WORDS = r"[^\W_]{1,30}(?:[ -][^\W_]{1,30}){1,11}(?=[^\S\n]{0,3}(?:[\n.,;!?()]|$))"

#: a vendor's token: its prefix, then the rest (Stripe, GitHub, GitLab, Slack, AWS, Google API key,
#: OAuth secret and token, OpenAI-style sk-, SendGrid, npm, Yandex OAuth, Shopify)
_VENDOR_TOKENS = [
    *((prefix, r"(?:live|test)_[A-Za-z0-9]{10,200}") for prefix in ("sk_", "pk_", "rk_")),
    *((f"gh{letter}_", r"[A-Za-z0-9]{20,200}") for letter in "pousr"),
    ("github_pat_", r"\w{22,255}"), ("glpat-", r"[\w-]{20,100}"),
    ("xox", r"[abeprs]-[A-Za-z0-9-]{10,200}"), ("xapp-", r"[\w-]{10,200}"),
    *((prefix, r"[0-9A-Z]{16}\b") for prefix in ("AKIA", "ASIA")),
    ("AIza", r"[\w-]{35}(?![\w-])"), ("GOCSPX-", r"[\w-]{20,60}"),
    ("ya29.", r"[\w-]{20,2000}"), ("sk-", r"(?:proj-|ant-)?(?=[\w-]{0,200}\d)[\w-]{20,200}"),
    ("whsec_", r"[A-Za-z0-9]{20,100}"), ("SG.", r"[\w-]{16,32}\.[\w-]{20,64}"),
    ("npm_", r"[A-Za-z0-9]{36}\b"), ("y0_", r"[\w-]{30,200}"),
    ("shp", r"(?:at|ss|ca|pa)_[a-fA-F0-9]{32}\b"),
]
#: mask every group of the regex that took part in a match
_EACH_GROUP = "each"
# (kind, regex, group(s) to mask: a number, a name or _EACH_GROUP; of several, each that took part)
_PATTERNS: list[tuple[str, re.Pattern[str], int | str | tuple[int | str, ...]]] = [
    ("private_key", re.compile(r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[\s\S]{0,20000}?(?:-----END [A-Z ]{0,40}PRIVATE KEY-----|\Z)"), 0),
    # the user may be an e-mail address and the password may hold "@": it ends at the last "@"
    ("url_password", re.compile(r"\b[a-z][a-z0-9+.-]{1,15}://[^\s/:]{1,100}:([^\s/]{1,100})@", re.I), 1),
    ("webhook_token", re.compile(r"/rest/\d{1,10}/([A-Za-z0-9]{6,64})(?=/|\b)"), 1),
    ("webhook_url", re.compile("|".join([
        r"hooks\.slack\.com/(?:services|workflows|triggers)/([\w/-]{8,300})",
        r"discord\.com/api/webhooks/(\d{5,30}/[\w-]{20,200})", r"discordapp\.com/api/webhooks/(\d{5,30}/[\w-]{20,200})",
        r"\.webhook\.office\.com/webhookb2/([^\s\"'<>]{10,500})", r"outlook\.office(?:365)?\.com/webhook/([^\s\"'<>]{10,500})",
        r"hooks\.zapier\.com/hooks/catch/(\d{2,20}/\w{3,40})", r"hook\.(?:[a-z0-9]{2,10}\.)?(?:make|integromat)\.com/(\w{10,60})",
        # an n8n webhook: its UUID is the only thing that guards it
        r"/webhook(?:-test)?/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"])), _EACH_GROUP),
    ("jwt", re.compile(r"\beyJ[\w-]{5,2000}\.[\w-]{5,2000}\.[\w-]{5,2000}"), 0),
    ("vendor_token", re.compile("|".join(_literal_first(prefix, rest) for prefix, rest in _VENDOR_TOKENS)), 0),
    # Telegram bot token: the bot's number, ":", 35 characters
    ("bot_token", re.compile(r"(?<![0-9])[0-9]{6,12}:[A-Za-z0-9_-]{35}(?![\w-])"), 0),
    ("authorization", re.compile(r"\bAuthorization\s{0,3}:\s{0,3}(?:(?:Basic|Bearer|Token|Digest|Negotiate)\s{1,3})?"
                                 r"([^\s'\"]{6,2000})", re.I), 1),
    ("bearer", re.compile(r"\bBearer\s+([A-Za-z0-9._~+/=-]{8,500})", re.I), 1),
    ("api_token", re.compile(
        r"(?:\b|(?<=_))(?:secret[ _-]?access[ _-]?key|private[ _-]?token|api[ _-]?key|api[ _-]?token|access[ _-]?token|auth[ _-]?token|refresh[ _-]?token|client[ _-]?secret"
        r"|secret[ _-]?key|app[ _-]?secret|(?:app|encryption|signing|master)[ _-]?key|webhook[ _-]?(?:secret|token|code)|token|application_token)"
        r"\s*(?:[:=]|is|:=|=>)\s*[\"'`]?(?:base64:)?([A-Za-z0-9._~+/=-]{8,500})", re.I), 1),
    # 'password' => 'a b c', $DBPassword = "…", define('DB_PASSWORD', '…'), "token": "…":
    # a quoted value after a secret-named key, spaces allowed
    ("config_secret", re.compile(
        r"(?:password|passwd|pwd|pass|secret|token|api_?key)\w{0,20}[\"']?\s{0,5}(?:=>|=|:)\s{0,5}"
        r"([\"'])([^\"'\n]{1,200})\1", re.I), 2),
    ("config_secret", re.compile(
        r"\bdefine\(\s{0,5}[\"']\w{0,40}(?:PASSWORD|PASSWD|PASS|PWD|SECRET|TOKEN|KEY)\w{0,20}[\"']\s{0,5},\s{0,5}"
        r"([\"'])([^\"'\n]{1,200})\1", re.I), 2),
    # "key 5f3d9a1c77b04e2e9c1a", {"key":"a9f3c2e17b4d8065f1e2"}: a hex value after a key-like word
    ("hex_secret", re.compile(r"\b(?:key|secret|token|signature|salt)\b[\"']?\s{0,3}(?:[:=]|is)?\s{0,3}[\"']?"
                              r"([A-Fa-f0-9]{16,128})\b", re.I), 1),
    # htpasswd / crypt(3) hashes ($apr1$, bcrypt $2y$, $6$, yescrypt $y$, argon2, phpass $P$) and {SHA}
    ("password_hash", re.compile(r"(?<![\w$])\$(?:apr1|2[abxy]?|[1567y]|gy|argon2(?:id|i|d)|[PH])\$[\w./=,+$-]{8,300}"
                                 r"|\{S?SHA(?:256|512)?\}[A-Za-z0-9+/]{20,200}={0,2}"), 0),
    # mysql -pSECRET, curl -u user:SECRET, sshpass -p SECRET, net use … /user:DOMAIN\user SECRET …
    ("command_password", _COMMANDS, _EACH_GROUP),
    # "the password comes in two lines:\nKx7#pL\n9qR2zW"
    ("password_lines", re.compile(_KW_START + r"[^\n]{0,80}?" + _SPLIT + r"[^\n]{0,60}\n[^\S\n]{0,3}(?P<line_1>\S{2,100})"
                                  r"[^\S\n]{0,3}\n[^\S\n]{0,3}(?P<line_2>\S{2,100})(?=[^\S\n]{0,3}(?:\n|$))", re.I),
     ("line_1", "line_2")),
    # "passphrase: blue lantern river", "the passphrase is 'correct horse battery staple'"
    ("passphrase", re.compile(r"\b" + _KW_PHRASE + r"\b" + _FOR_WHAT
                              + r"(?:" + _STRONG_SEP + r"\s*" + _quoted("quoted") + r"|[^\S\n]{0,3}:\s*(?P<phrase>" + _WORDS + r")"
                              r"|(?:" + _SAID_SEP + r")\s*(?:(?<=[\s:—–-])" + _quoted("said_quoted")
                              + r"|(?P<said_phrase>" + _WORDS + r")))", re.I), ("quoted", "phrase", "said_quoted", "said_phrase")),
    ("password", re.compile(_KW_START + _FOR_WHAT
                            + r"(?:" + _STRONG_SEP + r"\s*(?:" + _quoted("quoted")
                            # (the value is never itself a password word that a label follows: "password:\n\nпароль от FTP — x",
                            # "password:\n\nDatenbankpasswort: x")
                            # (nor the start of a part: "Passwort: erste Hälfte: x")
                            + r"|[\"'`«]?(?![\w-]{0,30}?" + _KW_PASSWORD + r"\b(?:[^\S\n]{0,3}[:=]|[^\S\n]{1,3}[\w—–-])|" + _PART + ")"
                            r"(?P<value>[^\s\"'`»]{1,200}))"
                            r"|(?:" + _SAID_SEP + r")\s*(?<=[\s:—–-])" + _quoted("said_quoted")
                            + r"|(?:" + _WEAK_SEP + r")\s*[\"'`«]?" + _MADE_UP + r"(?P<made_up>[^\s\"'`»]{4,200})"
                            # "(the password is bluebird)", and "(pwd bluebird)": an abbreviation needs no "is"
                            r"|(?:" + _SAID_SEP + r"|(?(abbreviation)(?=\s)|(?!)))\s*(?P<aside>[^\s\"'`«»()]{3,60})(?=\)))",
                            re.I), ("quoted", "value", "said_quoted", "made_up", "aside")),
    # "second half: mzP2#", "вторая половина пароля — mzP2#" (only in a text that speaks of a password: _CONTEXTS)
    ("password_part", re.compile(_PART + r"(?:\s{1,3}[\w.-]{1,30}){0,3}?(?:" + _STRONG_SEP + "|" + _SAID_SEP + r")\s*"
                                 r"[\"'`«]?" + _MADE_UP + r"([^\s\"'`»]{3,200})", re.I), 1),
    ("license_key", re.compile(
        r"\b(?:license|licence|lizenz|licencia|licença|licencja|лицензи\w{0,3})[ _-]?(?:key|schlüssel|clave|chave|klucz|ключ)?"
        r"\s*(?:[:=#]|is|ist|es|é)?\s*[\"'`]?([A-Z0-9]{2,10}(?:-[A-Z0-9]{2,20}){1,8})", re.I), 1),
    ("license_key", re.compile(r"(?<![\w-])(?P<bare_key>[A-Z0-9]{2,6}(?:-[A-Z0-9]{2,20}){2,7})(?![\w-])"), "bare_key"),
    ("hex_secret", re.compile(r"\b[a-f0-9]{32,128}\b", re.I), 0),
    # a bare base64 "user:password" (a Basic-auth value without its header), decoded and checked
    # in _looks_secret. Each 4 characters encode 3 printable ASCII bytes, and a printable byte
    # (0x20-0x7e) puts the 1st character of the 4 in [I-Za-f] and the 2nd in [C-HS-Xi-ny-z0-3]:
    # most words and ids ("Bitrix24", "settings") fail that and never reach the decoder.
    # (The first character class comes first, so that the engine skips to it fast.)
    ("basic_auth", re.compile(r"[I-Za-f](?<![\w+/=][I-Za-f])[C-HS-Xi-ny-z0-3][A-Za-z0-9+/]{2}"
                              r"(?:[I-Za-f][C-HS-Xi-ny-z0-3][A-Za-z0-9+/]{2}){1,124}"
                              r"(?:[I-Za-f][AQgw]==|[I-Za-f][C-HS-Xi-ny-z0-3][A-Za-z0-9+/]=)?(?![\w+/=])"), 0),
]
#: Characters the patterns' IGNORECASE matches as another letter ("paſſword", "парᲂль",
#: the Kelvin sign in "Kennwort") that Hyperscan's case-insensitive mode does not: the
#: prefilter reads them as that letter, or a secret written with them would pass unseen.
CASE_FOLDS = {0x130: "i", 0x131: "i", 0x17F: "s", 0x212A: "k", 0x1C80: "в", 0x1C81: "д", 0x1C82: "о", 0x1C83: "с",
              0x1C84: "т", 0x1C85: "т", 0x1C86: "ъ"}
_FOLDED = re.compile("[" + "".join(map(chr, CASE_FOLDS)) + "]")
_GROUPS = [tuple(range(1, regex.groups + 1)) if groups == _EACH_GROUP else groups if isinstance(groups, tuple) else (groups,)
           for _, regex, groups in _PATTERNS]
#: for a pattern Hyperscan finds too large or slow to compile, a regex that every text the
#: pattern matches (and, for password_part, its context: _CONTEXTS) also matches
_GATE_OF = {
    "webhook_url": r"webhook|hooks?\.",
    "jwt": r"eyJ",
    "vendor_token": "|".join(re.escape(prefix) for prefix, _ in _VENDOR_TOKENS),
    "password_hash": r"\$(?:apr1|2[abxy]?|[1567y]|gy|[PH])\$|\$argon2|\{S?SHA",
    "command_password": "|".join(re.escape(name) for name, _ in _COMMAND_LINES),
    "passphrase": r"phrase|passwortsatz|mnemonic|кодов|парольн|frase|fraza",
    "password": _KW_START,
    "password_lines": _KW_START,
    "password_part": _KW_START,
}
_KW = len(_PATTERNS)


@functools.cache
def _prefilter() -> Prefilter:
    """Which patterns can match a text (see prefilter), the password words last; compiled
    on first use, so that a command that masks nothing does not wait for it."""
    return Prefilter([(_GATE_OF.get(kind, regex.pattern), not regex.flags & re.I) for kind, regex, _ in _PATTERNS]
                     + [(_KW_ANYWHERE.pattern, False)])


def gate_text(text: str) -> str:
    """``text`` as the prefilter reads it: with the letters of CASE_FOLDS folded."""
    if text.isascii() or not _FOLDED.search(text):
        return text
    return text.translate(CASE_FOLDS)


def _speaks_of_password(text: str, found: set[int]) -> bool:
    return _KW in found and bool(_KW_ANYWHERE.search(text))


#: Patterns that count only in a text that speaks of a password ("second part: 2 users"
#: is not a secret); a rule, not a shortcut: the pattern would match without it.
_CONTEXTS = {"password_part": _speaks_of_password}

_STEPS = list(zip(_PATTERNS, _GROUPS))
# "admin / Qw7!mzP2" on a line that talks about access
#: (spaces around the slash, so paths, "HTTP/1.1" and dates are not pairs)
_PAIR = re.compile(r"\b[\w.@-]{2,60}\s{1,3}/\s{1,3}([^\s/]{0,60}[0-9!@#$%^&*][^\s/]{0,60})")
#: a "/" with whitespace both sides, which every _PAIR match holds (found by a fast
#: search for "/"; the look-arounds then test its neighbours)
_SPACED_SLASH = re.compile(r"/(?<=\s/)(?=\s)")
#: a table's cells: "| Login | Password |" or tab-separated; a header cell naming a password
_CELLS = re.compile(r"(\t|\|)")
_PASSWORD_HEADER = re.compile(r"\s{0,3}(?:[\w.-]{1,30}\s{1,3}){0,3}" + _KW_PASSWORD + r"\s{0,3}:?\s{0,3}", re.I)
_TABLE_RULE = re.compile(r"[\s|:+-]*")
#: where a value in a connection string ends: "Password=x;Encrypt=no"
_CONNECTION_STRING_NEXT = re.compile(r";(?=[\w ]{1,40}=)")
#: values that are not secrets even after "password:" ("using password: YES" in MySQL errors)
_NOT_SECRETS = {"yes", "no", "none", "null", "empty", "true", "false", "n/a", "[hidden]", "<hidden>"}
#: words no passphrase holds but every sentence does: articles, pronouns, negations,
#: prepositions and auxiliaries of the seven languages
_FUNCTION_WORDS = frozenset("""
    a an the is are was be been has have had not no never by for of to in on at with and or but it i we you my our your
    this that same as from set still also too very now then there here please
    der die das den dem des ein eine einen ist sind war nicht kein keine und oder mit für von zu im es ich wir sie mein
    unser noch auch schon bitte
    не нет и или в на с для это я мы мой наш тот та то же как от к по уже ещё еще
    el la los las un una es son no y o con para de del en mi nuestro que lo mismo ya
    o a os as um uma é são não nao e ou com para de do da em meu nosso que mesmo já
    nie i lub z dla do w na jest to mój nasz że ten sam już
    le la les un une est sont pas ne et ou avec pour de du des en mon notre que même meme déjà
""".split())
#: what a lone word after "the password is" in an aside says about a password rather than giving it
_STATE_WORDS = frozenset("""
    wrong incorrect invalid expired correct right blank empty required missing ok okay fine changed reset saved unknown
    known lost forgotten hidden masked new old weak strong long short ignored accepted rejected encrypted hashed
    stored locked blocked disabled enabled needed optional mandatory valid below above attached enclosed included
    unchanged temporary default removed deleted sent updated working broken different identical manager policy field
    change recovery protected generator hint rules length complexity expiry again inside elsewhere unset
    case-sensitive command generated personal unique random secure insecure simple complex
    falsch richtig leer abgelaufen ungültig gültig geändert gleich derselbe dasselbe neu alt gesperrt korrekt bekannt
    unbekannt vergessen zurückgesetzt erforderlich anbei unten oben gespeichert
    неверный верный правильный неправильный пустой истёк истек сброшен изменён изменен старый новый такой ниже выше
    прежний заблокирован верен неверен другой прежним
    incorrecta correcta vacía vacia caducada inválida invalida nueva antigua misma igual abajo arriba cambiada bloqueada
    errada correta vazia expirada nova antiga mesma abaixo acima alterada
    błędne bledne złe zle poprawne puste wygasło wygaslo nowe stare takie samo poniżej ponizej powyżej powyzej
    zmienione zablokowane
    incorrecte correcte vide expiré invalide nouveau ancien identique dessous ci-dessous modifié bloqué
""".split())
#: a base64 value that decodes to "user:password" (not a URL, not JSON)
_LOGIN_PAIR = re.compile(r"[^\s:\"'{}\[\]<>/]{1,128}:(?!//)[^\n]{0,256}")


@dataclass
class MaskResult:
    text: str
    kinds: list[str] = field(default_factory=list)

    @property
    def masked(self) -> bool:
        return bool(self.kinds)


def _decodes_to_login(value: str) -> bool:
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return decoded.isprintable() and bool(_LOGIN_PAIR.fullmatch(decoded))


def _is_mac_address(value: str) -> bool:
    return bool(re.fullmatch(r"[0-9A-Fa-f]{2}(?:[-:][0-9A-Fa-f]{2}){5,7}", value))


def _looks_secret(value: str, kind: str, group: int | str) -> bool:
    """Whether ``value`` (``group`` of a ``kind`` match) is a secret to mask."""
    if not value or value == MASK or value.startswith("[MASKED"):
        return False
    if kind in ("password", "password_part"):
        # "the password is wrong" never gets here (see _WEAK_SEP); "password: admin" is a secret,
        # "(using password: YES)" and "password: ****" are not
        core = value.rstrip(".,;)").lower()
        if group == "aside" and (core in _FUNCTION_WORDS or core in _STATE_WORDS):
            return False  # "(the password is wrong)"
        return core not in _NOT_SECRETS and bool(core.strip("*x•."))
    if kind == "passphrase" and group == "said_phrase":
        # "the passphrase is correct horse battery staple", not "the passphrase is not accepted"
        words = value.lower().replace("-", " ").split()
        return not _FUNCTION_WORDS.intersection(words) and (len(words) >= 3 or words[0] not in _STATE_WORDS)
    if kind == "license_key":
        groups = value.split("-")
        mixed = sum(1 for g in groups if re.search(r"[A-Za-z]", g) and re.search(r"\d", g))
        length = len(value.replace("-", ""))
        if group == "bare_key" and len(groups) < 4 and length < 16:
            return False  # an SKU or part number: AB12-CD34-EF56
        return mixed >= 1 and length >= 12 and not _is_mac_address(value)
    if kind == "basic_auth":
        return _decodes_to_login(value)
    return True


def _mask_password_columns(text: str, kinds: list[str]) -> str:
    """In a table whose header names a password ("| Login | Password |"), mask that column's cells."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not _CELLS.search(line) or not _KW_ANYWHERE.search(line):
            continue
        header = _CELLS.split(line)
        columns = [j for j in range(0, len(header), 2) if _PASSWORD_HEADER.fullmatch(header[j])]
        for k in range(i + 1, min(i + 21, len(lines))) if columns else ():
            if not lines[k].strip() or len(_CELLS.split(lines[k])) != len(header):
                break
            if _TABLE_RULE.fullmatch(lines[k]):
                continue
            cells = _CELLS.split(lines[k])
            for j in columns:
                value = cells[j].strip()
                if not value.split()[1:] and _looks_secret(value, "password", j) and not _KW_ANYWHERE.search(value):
                    cells[j] = cells[j].replace(value, MASK)
                    kinds.append("table_password")
            lines[k] = "".join(cells)
    return "\n".join(lines)


def mask_secrets(text: str) -> MaskResult:
    """Replace every secret in ``text`` by ``[MASKED]``; report which kinds were found."""
    if not text:
        return MaskResult(text)
    kinds: list[str] = []
    found = _prefilter().candidates(gate_text(text))
    for i in sorted(found - {_KW}):
        (kind, regex, _), groups = _STEPS[i]
        if kind in _CONTEXTS and not _CONTEXTS[kind](text, found):
            continue

        def repl(m: re.Match[str], kind: str = kind, groups: tuple[int | str, ...] = groups) -> str:
            whole, pieces, done = m.group(0), [], 0
            for group in groups:
                value = m.group(group)
                if value is None or not _looks_secret(value, kind, group):
                    continue
                # a sentence's closing punctuation is not part of a prose password, nor is the
                # next "Key=value" of a connection string ("Password=x;Encrypt=no")
                core = value
                if kind in ("password", "password_part"):
                    core = _CONNECTION_STRING_NEXT.split(value.rstrip(".,;)"), 1)[0]
                start = m.start(group) - m.start(0)
                pieces += [whole[done:start], MASK]
                done = start + len(core)
                kinds.append(kind)
            return "".join(pieces) + whole[done:] if pieces else whole
        text = regex.sub(repl, text)
    if ("|" in text or "\t" in text) and _speaks_of_password(text, found):
        text = _mask_password_columns(text, kinds)
    # _PAIR needs " / " (whitespace both sides): without one no line can change
    if not _SPACED_SLASH.search(text):
        return MaskResult(text, kinds)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        # a line that talks about access, or had a secret masked already ("password: x, admin / y")
        if _SPACED_SLASH.search(line) and (MASK in line or _ACCESS_WORDS.search(line)):
            def pair(m: re.Match[str]) -> str:
                value = m.group(1)
                if (value.startswith("[MASKED") or re.fullmatch(r"[\d./-]+", value) or len(value) < 5
                        or re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+[.,;:)?!]?", value)):  # 4GB, utf8mb4_unicode_ci
                    return m.group(0)
                kinds.append("login_password")
                return m.group(0)[: m.start(1) - m.start(0)] + MASK
            lines[i] = _PAIR.sub(pair, line)
    return MaskResult("\n".join(lines), kinds)
