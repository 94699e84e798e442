"""Mask secrets (SPEC §7 ``credentials_present``) before anything else sees the text.

Each pattern names the kind of secret it finds; only the secret part is replaced
by ``[MASKED]``, so "password: Qw7!mzP2" becomes "password: [MASKED]" and the
rest of the request still reads naturally for the rules and the model. Every
pattern is linear-time on long input (no nested quantifiers; tests/test_security.py
checks the scaling). A run of 32+ hex digits is masked whatever precedes it, so a
full 40-character git commit hash is masked too (it cannot be told from a webhook
token or client secret); short hashes are not. The corpus the masker is measured on
is tests/fixtures/credentials.yaml (secrets and look-alikes).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .regex_literals import GateScanner, gate_strings, passes, regex_gate

MASK = "[MASKED]"

_KW_PASSWORD = (r"(?:password|passwort|passwd|pass(?:phrase)?|pwd|pw|kennwort|contrase(?:ñ|n)a|senha|"
                r"has(?:ł|l)o|пароль|mot de passe|clave|secret|root pw)")
_ACCESS_WORDS = re.compile(r"\b(?:ftp|sftp|ssh|rdp|remote desktop|anydesk|teamviewer|cpanel|plesk|ispmanager|"
                           r"control panel|admin panel|login|log in|logon|sign in|credentials|access|zugang|zugangsdaten|доступ|"
                           r"acceso|acesso|dostęp|user(?:name)?|benutzer|root|admin|server|vps|host)\b", re.I)

#: "password: x", "password = x": the value is a secret whatever it looks like
_STRONG_SEP = r"\s{0,3}(?:=>|:=|[:=])"
#: "password is x", "Passwort - x", "password x": only a value that looks made up
#: (a digit or a symbol in it) is a secret, so "the password is wrong" is not masked
_WEAK_SEP = r"\s{0,3}[-—–]|\s{1,3}(?:is|ist|est|es|é|lautet|to|was|это)\b:?|(?=\s)"

# (kind, regex, group to mask)
_PATTERNS: list[tuple[str, re.Pattern[str], int | tuple[int, ...]]] = [
    ("private_key", re.compile(r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[\s\S]{0,20000}?(?:-----END [A-Z ]{0,40}PRIVATE KEY-----|\Z)"), 0),
    ("url_password", re.compile(r"\b[a-z][a-z0-9+.-]{1,15}://[^\s/:@]{1,100}:([^\s/@]{1,100})@", re.I), 1),
    ("webhook_token", re.compile(r"/rest/\d{1,10}/([A-Za-z0-9]{6,64})(?=/|\b)"), 1),
    ("jwt", re.compile(r"\beyJ[\w-]{5,2000}\.[\w-]{5,2000}\.[\w-]{5,2000}"), 0),
    ("vendor_token", re.compile(r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,200}|\bgh[pousr]_[A-Za-z0-9]{20,200}"
                                r"|\bxox[abprs]-[A-Za-z0-9-]{10,200}|\bAKIA[0-9A-Z]{16}\b"), 0),
    ("authorization", re.compile(r"\bAuthorization\s{0,3}:\s{0,3}(?:(?:Basic|Bearer|Token|Digest|Negotiate)\s{1,3})?"
                                 r"([^\s'\"]{6,2000})", re.I), 1),
    ("bearer", re.compile(r"\bBearer\s+([A-Za-z0-9._~+/=-]{8,500})", re.I), 1),
    ("api_token", re.compile(
        r"(?:\b|(?<=_))(?:secret[ _-]?access[ _-]?key|private[ _-]?token|api[ _-]?key|api[ _-]?token|access[ _-]?token|auth[ _-]?token|refresh[ _-]?token|client[ _-]?secret"
        r"|secret[ _-]?key|app[ _-]?secret|webhook[ _-]?(?:secret|token|code)|token|application_token)"
        r"\s*(?:[:=]|is|:=|=>)\s*[\"'`]?([A-Za-z0-9._~+/=-]{8,500})", re.I), 1),
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
    ("password", re.compile(r"(?:\b|(?<=_))" + _KW_PASSWORD + r"\b"
                            r"(?:\s{1,3}(?:for|of|to|für|para|для|от|do|dla|de|du)(?:\s{1,3}[\w.@-]{1,60}){1,3}?)?"
                            # (the value is never itself a password word: "password:\n\nпароль от FTP — x")
                            r"(?:" + _STRONG_SEP + r"\s*[\"'`«]?(?!" + _KW_PASSWORD + r"\b)([^\s\"'`»]{1,200})"
                            r"|(?:" + _WEAK_SEP + r")\s*[\"'`«]?(?=[^\s\"'`»]{0,200}[\d!@#$%^&*_])([^\s\"'`»]{4,200}))", re.I), (1, 2)),
    ("license_key", re.compile(
        r"\b(?:license|licence|lizenz|licencia|licença|licencja|лицензи\w{0,3})[ _-]?(?:key|schlüssel|clave|chave|klucz|ключ)?"
        r"\s*(?:[:=#]|is|ist|es|é)?\s*[\"'`]?([A-Z0-9]{2,10}(?:-[A-Z0-9]{2,20}){1,8})", re.I), 1),
    ("license_key", re.compile(r"\b[A-Z0-9]{2,6}(?:-[A-Z0-9]{2,20}){2,7}\b"), 0),
    ("hex_secret", re.compile(r"\b[a-f0-9]{32,128}\b", re.I), 0),
]
#: Characters the patterns' IGNORECASE matches as an ASCII letter although their
#: lower case is not it ("paſſword"): the gates see them as that letter, or a secret
#: written with them would pass the gates unseen (İ and the Kelvin sign lower-case to i, k).
CASE_FOLDS = {0x131: "i", 0x17F: "s"}
#: per pattern, a test the lower-cased text must pass for the pattern to match (see regex_literals)
_GATES = [regex_gate(regex.pattern, regex.flags) for _, regex, _ in _PATTERNS]
_SCANNER = GateScanner(gate_strings(_GATES))

#: Cheap tests (a byte scan, or a regex whose literal first character is searched for in
#: C) that every text a pattern matches passes; the pattern runs only on a text that
#: passes. They cover the two patterns no gate covers (no literal in them) and three
#: gated ones whose keywords ("pass", "key", "license") are common in requests.
#: Hex: [a-f0-9] ignoring case is exactly ASCII 0-9a-fA-F (no other code point), and a
#: non-ASCII character becomes "?" (not hex) when encoded, so the bytes have the same runs.
_HEX_BYTES = bytes(0x78 if chr(b) in "0123456789abcdefABCDEF" else 0x20 for b in range(256))


def _hex_run(length: int):
    run = b"x" * length
    return lambda text: run in text.encode("ascii", "replace").translate(_HEX_BYTES)


_PRETESTS: dict[tuple[str, str], object] = {
    # (kind, start of the pattern): test
    # the quote after the separator: "(?:=>|=|:)\s{0,5}([\"'])"
    ("config_secret", "(?:password"): re.compile(r"(?:=>|=|:)\s{0,5}[\"']").search,
    ("hex_secret", r"\b(?:key"): _hex_run(16),
    # the value has a "-" between two of [A-Z0-9] (same class and flag as the pattern)
    ("license_key", r"\b(?:license"): re.compile(r"-(?<=[A-Z0-9]{2}-)[A-Z0-9]{2}", re.I).search,
    # a match has two more groups after its first: "-", 2 to 20 of [A-Z0-9], "-", 2 more
    ("license_key", r"\b[A-Z0-9]"): re.compile(r"-[A-Z0-9]{2,20}-[A-Z0-9]{2}").search,
    ("hex_secret", r"\b[a-f0-9]"): _hex_run(32),
}
_PRETEST = [next((test for (k, start), test in _PRETESTS.items() if k == kind and regex.pattern.startswith(start)), None)
            for kind, regex, _ in _PATTERNS]
assert sorted(map(id, filter(None, _PRETEST))) == sorted(map(id, _PRETESTS.values()))  # each used once
_STEPS = list(zip(_PATTERNS, _GATES, _PRETEST))
#: a text with none of the gate strings found passes no gate but the empty one
_UNGATED_STEPS = [step for step in _STEPS if not step[1]]
# "admin / Qw7!mzP2" on a line that talks about access
#: (spaces around the slash, so paths, "HTTP/1.1" and dates are not pairs)
_PAIR = re.compile(r"\b[\w.@-]{2,60}\s{1,3}/\s{1,3}([^\s/]{0,60}[0-9!@#$%^&*][^\s/]{0,60})")
#: a "/" with whitespace both sides, which every _PAIR match holds (found by a fast
#: search for "/"; the look-arounds then test its neighbours)
_SPACED_SLASH = re.compile(r"/(?<=\s/)(?=\s)")
#: values that are not secrets even after "password:" ("using password: YES" in MySQL errors)
_NOT_SECRETS = {"yes", "no", "none", "null", "empty", "true", "false", "n/a", "[hidden]", "<hidden>"}


@dataclass
class MaskResult:
    text: str
    kinds: list[str] = field(default_factory=list)

    @property
    def masked(self) -> bool:
        return bool(self.kinds)


def _looks_secret(value: str, kind: str) -> bool:
    if not value or value == MASK or value.startswith("[MASKED"):
        return False
    if kind == "password":
        # "the password is wrong" never gets here (see _WEAK_SEP); "password: admin" is a secret,
        # "(using password: YES)" and "password: ****" are not
        core = value.rstrip(".,;)").lower()
        return core not in _NOT_SECRETS and bool(core.strip("*x•."))
    if kind == "license_key":
        groups = value.split("-")
        mixed = sum(1 for g in groups if re.search(r"[A-Za-z]", g) and re.search(r"\d", g))
        return mixed >= 1 and len(value.replace("-", "")) >= 12
    return True


def mask_secrets(text: str) -> MaskResult:
    """Replace every secret in ``text`` by ``[MASKED]``; report which kinds were found."""
    if not text:
        return MaskResult(text)
    kinds: list[str] = []
    lowered = text.lower()
    if not lowered.isascii():
        lowered = lowered.translate(CASE_FOLDS)
    found = _SCANNER.scan(lowered)
    for (kind, regex, group), gate, pretest in _STEPS if found else _UNGATED_STEPS:
        if gate and not passes(gate, found):
            continue
        if pretest is not None and not pretest(text):
            continue

        def repl(m: re.Match[str], kind: str = kind, groups: int | tuple[int, ...] = group) -> str:
            group = next((g for g in (groups if isinstance(groups, tuple) else (groups,)) if m.group(g) is not None), 0)
            value = m.group(group)
            if not _looks_secret(value, kind):
                return m.group(0)
            # a sentence's closing punctuation is not part of a prose password
            core = value.rstrip(".,;)") if kind == "password" else value
            kinds.append(kind)
            start, end = m.start(group) - m.start(0), m.start(group) - m.start(0) + len(core)
            whole = m.group(0)
            return whole[:start] + MASK + whole[end:]
        text = regex.sub(repl, text)
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
