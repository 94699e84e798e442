"""Shared fixtures: things that are slow to build and used by several test modules."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from click.testing import CliRunner

from classifier.classify import Classifier
from classifier.features import Analyser

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the default in pyproject.toml): one worker per core, at most four, since
    each worker holds the rules and model of every language (about 1 GB)."""
    return max(1, min(os.cpu_count() or 1, 4))


@pytest.fixture(scope="session")
def analyser() -> Analyser:
    """The bundled rules in a full analyser (normalise + spaCy pipeline), built once (~1 s)."""
    return Analyser()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The folder of file fixtures beside the tests (``tests/fixtures``)."""
    return FIXTURES


@pytest.fixture(autouse=True, scope="session")
def _database_outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Servers and apps the tests start keep their store in a temporary folder, never
    in the checkout (the default, sqlite:///intake.db, is a file in the current folder);
    tests that need their own database set INTAKE_DATABASE_URL themselves."""
    if not os.environ.get("INTAKE_DATABASE_URL"):
        os.environ["INTAKE_DATABASE_URL"] = f"sqlite:///{tmp_path_factory.mktemp('store') / 'intake.db'}"


@pytest.fixture(scope="module")
def loaded() -> Classifier:
    """The bundled classifier, loaded once per test module (~2 s)."""
    return Classifier.load()


@pytest.fixture()
def runner(monkeypatch, loaded) -> CliRunner:
    """A CliRunner whose Classifier.load() returns the classifier loaded for the module."""
    monkeypatch.setattr(Classifier, "load", classmethod(lambda cls, *a, **kw: loaded))
    return CliRunner()
