"""The README and docs/ stay true: their Python examples run, their links resolve, and
every `intake` command and option they show exists."""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import click
import pytest

from classifier.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _blocks(page: Path, *languages: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text(encoding="utf-8")) if lang in languages]


def test_readme_is_short_and_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme) <= 8000, f"README.md has {len(readme)} characters, over 8,000"
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)", readme))
    assert len(DOCS) >= 4
    assert {f"docs/{p.name}" for p in DOCS} <= linked, "every docs/ page is linked from the README"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


PYTHON_PAGES = [p for p in PAGES if _blocks(p, "python")]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: p.name)
def test_python_examples_run(page: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # as a user runs them: not from inside the checkout
    for env in ("INTAKE_RULES", "INTAKE_MODEL"):
        monkeypatch.delenv(env, raising=False)
    for i, block in enumerate(_blocks(page, "python"), 1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block, f"{page.name}[python block {i}]", "exec"), {"__name__": "__docs__"})
        assert printed.getvalue().strip(), f"{page.name} python block {i} printed nothing"


def _commands(page: Path) -> list[list[str]]:
    """Every `intake …` invocation in the page's shell blocks, as argument lists (in
    ``console`` blocks only the ``$ `` lines: the rest is output)."""
    out = []
    for lang, body in FENCE.findall(page.read_text(encoding="utf-8")):
        if lang not in ("bash", "console", "sh"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token and set(token) <= set("&|;()<>"):
                    if "intake" in words:
                        out.append(words[words.index("intake") + 1:])
                    words = []
                else:
                    words.append(token)
    return out


COMMAND_PAGES = [p for p in PAGES if _commands(p)]


@pytest.mark.parametrize("page", COMMAND_PAGES, ids=lambda p: p.name)
def test_shown_commands_and_options_exist(page: Path) -> None:
    for args in _commands(page):
        command: click.Command = main
        rest = list(args)
        while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
            name = rest.pop(0)
            assert name in command.commands, f"{page.name}: `intake {' '.join(args)}`: no command {name!r}"
            command = command.commands[name]
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help", "--version"}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"{page.name}: `intake {' '.join(args)}`: no option {word}"
