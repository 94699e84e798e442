"""The input contract (SPEC §1): one request, validated field by field.

A record that cannot be read raises :class:`InputError` naming the row and the
field, so a batch can report it and go on with the other rows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from . import spec
from .errors import Errors, InputError

#: Longest text accepted at all; longer input is refused, not cut (cutting to
#: ``normalise.MAX_TEXT_CHARS`` happens later and is reported in the explanation).
MAX_INPUT_CHARS = 5_000_000
MAX_ATTACHMENTS = 100


@dataclass(frozen=True)
class Request:
    """One support request as SPEC §1 defines it."""

    text: str
    subject: str | None = None
    id: str | None = None
    channel: str | None = None
    attachments: tuple[str, ...] = field(default_factory=tuple)
    product: str | None = None
    #: ISO 639-1 code when the helpdesk knows the customer's language (SPEC §9)
    language: str | None = None

    @classmethod
    def from_mapping(cls, record: Any, row: int | str = 1) -> "Request":
        """Build a request from a JSON object or CSV row; ``row`` names it in errors."""
        if isinstance(record, Request):
            return record
        if isinstance(record, str):
            record = {"text": record}
        if not isinstance(record, Mapping):
            raise InputError(Errors.E036.format(row=row), row=row)

        def opt_str(name: str) -> str | None:
            value = record.get(name)
            if value is None or value == "":
                return None
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise InputError(Errors.E032.format(row=row, field=name, expected="a string",
                                                    got=type(value).__name__), row=row, field=name)
            return str(value)

        text = record.get("text")
        if text is None or (isinstance(text, str) and not text.strip()):
            raise InputError(Errors.E031.format(row=row), row=row, field="text")
        if not isinstance(text, str):
            raise InputError(Errors.E032.format(row=row, field="text", expected="a string",
                                                got=type(text).__name__), row=row, field="text")
        if len(text) > MAX_INPUT_CHARS:
            raise InputError(Errors.E032.format(row=row, field="text", expected=f"at most {MAX_INPUT_CHARS} characters",
                                                got=f"{len(text)} characters"), row=row, field="text")
        channel = opt_str("channel")
        if channel is not None and channel not in spec.CHANNELS:
            raise InputError(Errors.E034.format(row=row, field="channel", value=shown_in_message(channel),
                                                allowed=", ".join(spec.CHANNELS)), row=row, field="channel")
        product = opt_str("product")
        if product is not None and product not in spec.PRODUCTS:
            raise InputError(Errors.E034.format(row=row, field="product", value=shown_in_message(product),
                                                allowed=", ".join(spec.PRODUCTS)), row=row, field="product")
        language = opt_str("language")
        if language is not None:
            # "ru", "RU", "pt-BR", "de_AT": the primary subtag of a language tag
            primary = re.split(r"[-_]", language.strip(), maxsplit=1)[0].lower()
            if not _LANGUAGE_CODE.match(primary):
                raise InputError(Errors.E034.format(row=row, field="language", value=shown_in_message(language),
                                                    allowed="ISO 639-1 codes such as en, ru, de (a region such "
                                                    "as pt-BR is allowed)"), row=row, field="language")
            language = primary
        attachments = record.get("attachments")
        if attachments in (None, ""):
            attachments = ()
        elif isinstance(attachments, str):  # CSV: ';'-separated file names
            attachments = tuple(a.strip() for a in attachments.split(";") if a.strip())
        elif isinstance(attachments, (list, tuple)) and all(isinstance(a, str) for a in attachments):
            attachments = tuple(attachments)
        else:
            raise InputError(Errors.E032.format(row=row, field="attachments", expected="a list of file names",
                                                got=type(attachments).__name__), row=row, field="attachments")
        if len(attachments) > MAX_ATTACHMENTS:
            raise InputError(Errors.E032.format(row=row, field="attachments", expected=f"at most {MAX_ATTACHMENTS} names",
                                                got=f"{len(attachments)} names"), row=row, field="attachments")
        return cls(text=text, subject=opt_str("subject"), id=opt_str("id"), channel=channel,
                   attachments=attachments, product=product, language=language)


_LANGUAGE_CODE = re.compile(r"^[a-z]{2}$")
#: A word of six or more characters with a letter and a digit or symbol in it: in a field
#: value, out of any context that would tell, it may be a bare password ("Qw7!mzP2").
_MADE_UP_WORD = re.compile(r"(?=[^\s'\"]{0,99}[^\W\d_])(?=[^\s'\"]{0,99}[\d!@#$%^&*])[^\s'\"]{6,100}")


def shown_in_message(value: str, limit: int = 100) -> str:
    """A bad field value as an error message may repeat it: secrets and made-up words
    masked, cut to ``limit``."""
    from .masking import MASK, mask_secrets

    shown = _MADE_UP_WORD.sub(MASK, mask_secrets(value).text)
    return shown if len(shown) <= limit else shown[:limit] + "…"


class NumberedRecord(NamedTuple):
    """A record (or the error reading it) with the row number it came from in its file."""

    row: int
    record: Any
