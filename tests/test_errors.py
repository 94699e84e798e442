"""The error catalogue: one message per code, each starting with its own code."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from classifier.errors import Errors

SOURCE = Path(__file__).resolve().parent.parent / "classifier" / "errors.py"


def test_every_code_is_defined_once() -> None:
    # A second definition of a code silently replaces the first one's message.
    defined = re.findall(r"^\s+([EW]\d{3}) = ", SOURCE.read_text(encoding="utf-8"), re.M)
    twice = [code for code, n in Counter(defined).items() if n > 1]
    assert not twice, f"codes defined more than once in classifier/errors.py: {twice}"


def test_every_message_starts_with_its_code() -> None:
    for name, message in vars(Errors).items():
        if re.fullmatch(r"[EW]\d{3}", name):
            assert message.startswith(f"[{name}] "), name
