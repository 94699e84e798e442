"""The ``intake`` command: a thin layer over the library.

It parses arguments and turns library errors into ``Error: …`` with exit
status 1 (2 for usage errors, as click does).
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import click

from . import spec
from .errors import IntakeError

RULES_OPTION = click.option("--rules", "rules_dir", type=click.Path(path_type=Path), default=None,
                            help="Rules folder (default: the bundled rules/).")


def _fail(exc: Exception) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(1)


@click.group()
@click.version_option(package_name="intake-classifier")
def main() -> None:
    """Pre-screen support requests against the Bitrix24 SLA."""


@main.group()
def rules() -> None:
    """Validate and audit the YAML rules."""


@rules.command("check")
@RULES_OPTION
def rules_check(rules_dir: Path | None) -> None:
    """Validate every rules file and run every rule's examples."""
    from .matching import build_pipeline, run_rule_examples

    try:
        nlp = build_pipeline(rules_dir)
    except IntakeError as exc:
        _fail(exc)
    ruleset = nlp.get_pipe("intake_rule_matcher").ruleset
    failures, passed = run_rule_examples(nlp)
    for failure in failures:
        click.echo(f"FAIL {failure}")
    click.echo(f"{len(ruleset.rules)} rules in {len(ruleset.files)} files, "
               f"{sum(a + b for a, b in passed.values())} examples passed, {len(failures)} failed")
    ok = not failures
    # coverage per label: a label counts when its rules have >= 3 passing match and >= 1 passing no_match
    for kind, labels, title in (("clause", list(spec.CLAUSES), "clauses"),
                                ("severity", list(spec.SEVERITIES), "severity levels"),
                                ("info", list(spec.MISSING_ITEMS), "missing-info detectors"),
                                ("delay", [d for d in spec.DELAY_REASONS if d not in TEXT_DERIVED_DELAYS], "delay reasons"),
                                ("flag", [f for f in spec.FLAGS if f not in FIELD_DERIVED_FLAGS], "flags")):
        counts: dict[str, list[int]] = {label: [0, 0] for label in labels}
        for rule in ruleset.of_kind(kind):
            if rule.label in counts:
                counts[rule.label][0] += passed[rule.id][0]
                counts[rule.label][1] += passed[rule.id][1]
        covered = [lb for lb, (m, n) in counts.items() if m >= 3 and n >= 1]
        missing = [lb for lb in labels if lb not in covered]
        click.echo(f"{title}: {len(covered)} of {len(labels)} covered (>= 3 passing match and >= 1 no_match examples)"
                   + (f"; not covered: {', '.join(missing)}" if missing else ""))
        ok = ok and not missing
    if not ok:
        sys.exit(1)


@main.group()
def data() -> None:
    """Inspect labelled data."""


@data.command("stats")
@click.option("--data", "data_path", type=click.Path(path_type=Path), default=None,
              help="Labelled requests, JSONL or CSV (default: data/tickets.jsonl).")
def data_stats(data_path: Path | None) -> None:
    """Print label counts and check the corpus coverage minimums and label consistency."""
    from . import dataset

    try:
        df = dataset.read_labelled(data_path or dataset.DEFAULT_DATA)
    except IntakeError as exc:
        _fail(exc)
    click.echo(f"{len(df)} rows")
    for name, counts in dataset.coverage(df).items():
        click.echo(f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    problems = [(r.get("id", i + 1), p) for i, r in enumerate(df.to_dict("records")) for p in dataset.label_problems(r)]
    for rid, problem in problems[:50]:
        click.echo(f"row {rid}: {problem}")
    short = dataset.coverage_shortfalls(df)
    for line in short:
        click.echo(f"below minimum: {line}")
    click.echo(f"label problems: {len(problems)}; coverage minimums: {'all hold' if not short else f'{len(short)} not met'}")
    if problems or short:
        sys.exit(1)


#: Delay reasons decided from other findings rather than their own rules (SPEC §6):
#: ``missing_information`` from missing_info, ``out_of_scope`` from the scope, and
#: ``misleading_information`` from contradicting signals of rules/info.yaml.
TEXT_DERIVED_DELAYS = ("missing_information", "out_of_scope", "misleading_information")
#: Flags decided without flag rules (SPEC §7): ``attachment_format`` from the
#: ``attachments`` field, ``unofficial_channel`` from ``channel``, and
#: ``credentials_present`` from the secret masker (classifier/masking.py).
FIELD_DERIVED_FLAGS = ("attachment_format", "unofficial_channel", "credentials_present")


if __name__ == "__main__":  # pragma: no cover
    main()
