"""Who may use the service: API keys for pipelines, passwords for desk agents, CSRF tokens.

- **API keys** come from ``$INTAKE_API_KEYS`` (comma-separated) and are sent as
  ``Authorization: Bearer KEY``. A key is never logged: a caller is named by
  ``key:`` and the first 8 hex digits of the key's SHA-256.
- **Passwords** are hashed with scrypt (``hashlib.scrypt``, the standard library's
  memory-hard KDF) and a random salt per user; only the hash is stored.
- **CSRF**: each desk session holds a random token; every form carries it and every
  POST is refused unless the two match.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from typing import Iterable, MutableMapping

from .errors import Errors, IntakeError

ENV_API_KEYS = "INTAKE_API_KEYS"
#: scrypt cost: n=2**15, r=8, p=1 takes ~32 MiB and ~0.1 s, the parameters OWASP recommends.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
_USER_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def api_keys_from_env() -> list[str]:
    """The keys in ``$INTAKE_API_KEYS`` (empty entries and spaces around them dropped)."""
    return [k.strip() for k in os.environ.get(ENV_API_KEYS, "").split(",") if k.strip()]


def new_api_key() -> str:
    return secrets.token_urlsafe(32)


def key_owner(key: str) -> str:
    """How logs and the store name the holder of ``key``, without the key."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]


def bearer_owner(authorization: str | None, keys: Iterable[str]) -> str | None:
    """The owner name of the key in an ``Authorization: Bearer KEY`` header, or None when
    there is none or it is not one of ``keys`` (compared in constant time)."""
    if not authorization:
        return None
    scheme, _, given = authorization.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return None
    found = None
    for key in keys:
        if hmac.compare_digest(given.encode(), key.encode()):
            found = key
    return key_owner(found) if found is not None else None


def checked_user_name(name: str) -> str:
    if not _USER_NAME.fullmatch(name or ""):
        raise IntakeError(Errors.E079.format(name=name))
    return name


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64) of ``password`` with a fresh salt."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches the stored hash (False for no or a malformed hash)."""
    if not stored:
        # as slow as a real check, so a wrong user name cannot be told from a wrong password
        hash_password(password)
        return False
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=64 * 1024 * 1024, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def csrf_token(session: MutableMapping[str, str]) -> str:
    """The session's CSRF token, made on first use."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_ok(session: MutableMapping[str, str], given: str | None) -> bool:
    expected = session.get("csrf")
    return bool(expected and given) and hmac.compare_digest(str(expected).encode(), str(given).encode())
