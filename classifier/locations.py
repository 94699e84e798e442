"""Where the rules and the model come from: given, the environment, or the bundled copy.

The bundled rules, reply templates and default model travel inside the installed
package (``classifier/bundled/rules`` and ``classifier/bundled/models`` in a wheel,
found with :mod:`importlib.resources`). In a source checkout installed with
``pip install -e .`` they are the top-level ``rules/`` and ``models/`` folders, their
editable source. A folder given by the caller (a ``--rules``/``--model`` flag, or an
argument) beats the environment (``INTAKE_RULES``, ``INTAKE_MODEL``), which beats the
bundled copy.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

ENV_RULES = "INTAKE_RULES"
ENV_MODEL = "INTAKE_MODEL"
#: The checkout's top folder, where ``rules/``, ``models/`` and ``data/`` are edited.
CHECKOUT = Path(__file__).resolve().parent.parent


def bundled(name: str) -> Path:
    """The bundled ``rules`` or ``models`` folder: package data in an installed wheel,
    the checkout's own folder in an editable install."""
    packaged = files("classifier") / "bundled" / name
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return CHECKOUT / name


def is_bundled_in_package() -> bool:
    """True when running from an installed wheel rather than a source checkout."""
    return bundled("rules") != CHECKOUT / "rules"


@dataclass(frozen=True)
class Source:
    """A folder in use and where the choice came from: ``given``, ``$INTAKE_RULES``
    (or ``$INTAKE_MODEL``) or ``bundled``."""

    path: Path
    origin: str

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "origin": self.origin}


def _source(given: str | Path | None, env: str, name: str) -> Source:
    if given is not None:
        return Source(Path(given), "given")
    from_env = os.environ.get(env, "").strip()
    if from_env:
        return Source(Path(from_env), f"${env}")
    return Source(bundled(name), "bundled")


def rules_source(given: str | Path | None = None) -> Source:
    """The rules folder to load: ``given``, else ``$INTAKE_RULES``, else the bundled rules."""
    return _source(given, ENV_RULES, "rules")


def model_source(given: str | Path | None = None) -> Source:
    """The model folder to load: ``given``, else ``$INTAKE_MODEL``, else the bundled model."""
    return _source(given, ENV_MODEL, "models")
