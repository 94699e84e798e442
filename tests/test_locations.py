"""Which rules and model are used: a flag beats the environment, which beats the bundled copy."""
from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from classifier.cli import main
from classifier.locations import ENV_MODEL, ENV_RULES, bundled, model_source, rules_source

ROOT = Path(__file__).resolve().parent.parent
TEXT = "How do I add a custom field to deals?"


def test_in_a_checkout_the_bundled_folders_are_the_editable_source() -> None:
    assert bundled("rules") == ROOT / "rules" and bundled("models") == ROOT / "models"
    assert rules_source().origin == "bundled" and model_source().origin == "bundled"


def test_given_beats_environment_beats_bundled(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_RULES, str(tmp_path / "env-rules"))
    monkeypatch.setenv(ENV_MODEL, "  ")  # blank counts as unset
    assert rules_source().path == tmp_path / "env-rules" and rules_source().origin == "$INTAKE_RULES"
    assert rules_source(tmp_path / "flag").origin == "given"
    assert model_source().origin == "bundled"


def _rules_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", copy)
    replies = copy / "replies.yaml"
    replies.write_text(replies.read_text(encoding="utf-8").replace("Thank you", "Many thanks"), encoding="utf-8")
    return copy


def test_classify_reads_intake_rules_and_a_flag_overrides_it(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_RULES, str(_rules_copy(tmp_path)))
    from_env = CliRunner().invoke(main, ["classify", "--no-model", TEXT])
    assert from_env.exit_code == 0 and "Many thanks" in from_env.output
    flagged = CliRunner().invoke(main, ["classify", "--no-model", "--rules", str(ROOT / "rules"), TEXT])
    assert flagged.exit_code == 0 and "Many thanks" not in flagged.output and "Thank you" in flagged.output


def test_a_broken_intake_model_is_refused_with_the_fix(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_MODEL, str(tmp_path / "nowhere"))
    result = CliRunner().invoke(main, ["classify", TEXT])
    assert result.exit_code == 1
    assert f"[E020] No model at {tmp_path / 'nowhere' / 'model.skops'}" in result.output


def test_version_says_where_rules_and_model_come_from(monkeypatch, tmp_path: Path) -> None:
    copy = _rules_copy(tmp_path)
    monkeypatch.setenv(ENV_RULES, str(copy))
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    rules_line, model_line = result.output.splitlines()[1:3]
    assert rules_line.startswith("rules: digest ") and rules_line.endswith(f"$INTAKE_RULES ({copy})")
    assert model_line.endswith(f"bundled ({ROOT / 'models'})")


def test_rules_export_copies_every_file_and_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    result = CliRunner().invoke(main, ["rules", "export", str(target)])
    assert result.exit_code == 0, result.output
    copied = sorted(p.relative_to(target) for p in target.rglob("*.yaml"))
    assert copied == sorted(p.relative_to(ROOT / "rules") for p in (ROOT / "rules").rglob("*.yaml"))
    check = CliRunner().invoke(main, ["rules", "check", "--rules", str(target)])
    assert check.exit_code == 0 and "clauses: 42 of 42 covered" in check.output
    again = CliRunner().invoke(main, ["rules", "export", str(target)])
    assert again.exit_code == 1 and f"[E082] {target} exists and is not empty" in again.output


def test_serve_reads_host_port_and_workers_from_the_environment(monkeypatch) -> None:
    import classifier.service as service

    seen = {}
    monkeypatch.setattr(service, "run", lambda **kw: seen.update(kw))
    monkeypatch.setenv("INTAKE_PORT", "8123")
    monkeypatch.setenv("INTAKE_WORKERS", "3")
    result = CliRunner().invoke(main, ["serve", "--port", "9001"])
    assert result.exit_code == 0, result.output
    assert seen["port"] == 9001 and seen["workers"] == 3 and seen["host"] == "127.0.0.1"
