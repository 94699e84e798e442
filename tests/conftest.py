"""Shared fixtures: things that are slow to build and used by several test modules."""
from __future__ import annotations

from pathlib import Path

import pytest

from classifier.features import Analyser

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def analyser() -> Analyser:
    """The bundled rules in a full analyser (normalise + spaCy pipeline), built once (~1 s)."""
    return Analyser()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The folder of file fixtures beside the tests (``tests/fixtures``)."""
    return FIXTURES
