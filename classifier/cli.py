"""The ``intake`` command: a thin layer over the library.

It parses arguments and turns library errors into ``Error: …`` with exit
status 1 (2 for usage errors, as click does).
"""
from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import click

from . import spec
from .errors import Errors, IntakeError

RULES_OPTION = click.option("--rules", "rules_dir", type=click.Path(path_type=Path), default=None,
                            help="Rules folder (default: $INTAKE_RULES, else the bundled rules).")
MODEL_OPTION = click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
                            help="Model folder with model.skops and manifest.json "
                                 "(default: $INTAKE_MODEL, else the bundled model).")


def _fail(exc: Exception) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(1)


def _labelled_data(data_path: Path | None) -> Path:
    """``--data``, else the checkout's labelled corpus (not part of an installed package)."""
    from . import dataset

    if data_path is not None:
        return data_path
    if not dataset.DEFAULT_DATA.exists():
        _fail(Errors.E080)
    return dataset.DEFAULT_DATA


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``intake --version``: the package, and which rules and model a command run now would use."""
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import version

    from .locations import model_source, rules_source
    from .model_files import read_manifest
    from .rules import load_rules

    click.echo(f"intake-classifier {version('intake-classifier')}")
    rules = rules_source()
    try:
        ruleset = load_rules(rules.path)
        click.echo(f"rules: digest {ruleset.digest[:12]}, {len(ruleset.rules)} rules, {rules.origin} ({rules.path})")
    except IntakeError as exc:
        click.echo(f"rules: {rules.origin} ({rules.path}): {exc}")
    model = model_source()
    try:
        manifest = read_manifest(model.path)
        click.echo(f"model: sha256 {str(manifest['model_sha256'])[:12]}, trained {manifest.get('trained_at', '?')}, "
                   f"{model.origin} ({model.path})")
    except IntakeError as exc:
        click.echo(f"model: {model.origin} ({model.path}): {exc}")
    ctx.exit()


@click.group()
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and which rules and model are in use, then exit.")
def main() -> None:
    """Pre-screen support requests against the Bitrix24 SLA."""


@main.group()
def rules() -> None:
    """Validate and audit the YAML rules."""


@rules.command("check")
@RULES_OPTION
@click.option("--language", "languages", multiple=True, metavar="CODE",
              help="Check only this language's examples and coverage (repeatable; default: every language).")
def rules_check(rules_dir: Path | None, languages: tuple[str, ...]) -> None:
    """Validate every rules file and run every rule's examples, in every language.

    Per language other than English it also reports the rules with fewer than 2 matching
    or 1 non-matching examples, every concept a rule uses that has no words in the
    language (rule id, concept) and the reply templates it lacks.
    """
    from .matching import build_pipeline, concepts_missing, run_rule_examples
    from .reply import REQUIRED
    from .rules import load_rules

    try:
        ruleset = load_rules(rules_dir)
        unknown = [code for code in languages if code not in ruleset.languages]
        if unknown:
            raise click.UsageError(f"no language pack for {', '.join(unknown)}; the rules have "
                                   f"{', '.join(sorted(ruleset.languages))}")
        pipelines = {code: build_pipeline(rules_dir, code) for code in (languages or ruleset.languages)}
    except IntakeError as exc:
        _fail(exc)
    ok = True
    for code, nlp in pipelines.items():
        failures, passed = run_rule_examples(nlp)
        for failure in failures:
            click.echo(f"FAIL {failure}")
        ok = ok and not failures
        name = ruleset.languages[code].name or code
        click.echo(f"{code} ({name}): {len(ruleset.rules)} rules in {len(ruleset.files)} files, "
                   f"{sum(a + b for a, b in passed.values())} examples passed, {len(failures)} failed")
        if code == "en":
            ok = _label_coverage(ruleset, passed) and ok
            continue
        few = [rule_id for rule_id, (m, n) in passed.items() if m < 2 or n < 1]
        click.echo(f"{code}: {len(passed) - len(few)} of {len(passed)} rules have >= 2 passing match and >= 1 "
                   f"no_match examples" + (f"; too few: {', '.join(few)}" if few else ""))
        missing = concepts_missing(ruleset, code)
        for rule_id, concept in missing:
            click.echo(f"{code}: rule {rule_id} uses concept {concept}, which has no {code} words")
        templates = ruleset.languages[code].templates
        lacking = [key for key in REQUIRED if key not in templates]
        click.echo(f"{code}: concepts: {len({c for _, c in missing})} used without {code} words; "
                   f"reply templates: " + (f"missing {', '.join(lacking)} (English is used)" if lacking else "all"))
    if not ok:
        sys.exit(1)


def _label_coverage(ruleset, passed: dict[str, tuple[int, int]]) -> bool:
    """Print, per kind of label, which labels have >= 3 passing match and >= 1 no_match examples."""
    ok = True
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
    return ok


@rules.command("report")
@click.option("--data", "data_path", type=click.Path(path_type=Path), default=None,
              help="Labelled requests, JSONL or CSV (default: data/tickets.jsonl).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="Also write the report as CSV to this file.")
@click.option("--text-col", default="text", show_default=True, help="Column holding the request text.")
@click.option("--label-col", default=None,
              help="Column of your own category labels (clause rules judged at category level only if they are SPEC categories).")
@RULES_OPTION
def rules_report(data_path, out_path, text_col, label_col, rules_dir) -> None:
    """Audit every rule against labelled data: coverage, overlaps, conflicts, precision.

    One row per rule id (see classifier/analysis.py for the exact definitions).
    """
    import pandas as pd

    from . import analysis, dataset

    try:
        report = analysis.rule_report(_labelled_data(data_path), text_col=text_col,
                                      label_col=label_col, rules_dir=rules_dir)
    except IntakeError as exc:
        _fail(exc)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 40):
        click.echo(report.to_string(float_format=lambda v: f"{v:.3f}"))
    judged = report["precision"].notna()
    click.echo(f"{len(report)} rules; {int((report['fires'] > 0).sum())} fired; "
               f"{int(judged.sum())} judged against gold labels")
    if out_path is not None:
        report.to_csv(out_path, float_format="%.4f")
        click.echo(f"report written to {out_path}")


@rules.command("export")
@click.argument("folder", type=click.Path(path_type=Path))
@RULES_OPTION
def rules_export(folder: Path, rules_dir: Path | None) -> None:
    """Copy the rules in use (the bundled ones by default) into FOLDER to edit them;
    then use them with --rules FOLDER or INTAKE_RULES=FOLDER."""
    import shutil

    from .locations import rules_source
    from .rules import load_rules

    source = rules_source(rules_dir)
    try:
        ruleset = load_rules(source.path)
    except IntakeError as exc:
        _fail(exc)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        _fail(Errors.E082.format(path=folder))
    for path in ruleset.files:
        target = folder / path.relative_to(source.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    click.echo(f"{len(ruleset.files)} rules files ({source.origin}, digest {ruleset.digest[:12]}) copied to {folder}; "
               f"edit them, run `intake rules check --rules {folder}`, then use --rules {folder}")


@main.command()
@click.option("--input", "input_path", type=click.Path(path_type=Path), required=True,
              help="Requests to rank, JSONL or CSV (labels, if any, are carried over).")
@click.option("--output", "output_path", type=click.Path(path_type=Path), required=True,
              help="CSV to write: one row per request, most in need of a label first.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Keep only the first N requests.")
@click.option("--text-col", default="text", show_default=True, help="Column holding the request text.")
@MODEL_OPTION
@RULES_OPTION
def review(input_path, output_path, limit, text_col, model_dir, rules_dir) -> None:
    """Rank requests for labelling and write a CSV to fill in and train on.

    score = (1 - confidence) + 0.5 * rule/model disagreement + 0.3 * rarity of the
    predicted category. Fill the empty gold columns (lists ';'-separated), delete
    the rows you do not label, then: intake train --data FILE.
    """
    from . import analysis, dataset

    clf = _load_classifier(model_dir, rules_dir)
    try:
        df = dataset.read_labelled(input_path, text_col=text_col)
        queue = analysis.review_queue(df, clf, limit=limit)
    except IntakeError as exc:
        _fail(exc)
    failed = queue.attrs.get("failed", [])
    if queue.empty:
        _fail(Errors.E064.format(path=input_path, failed=len(failed), first=failed[0] if failed else "-"))
    queue.to_csv(output_path, index=False)
    click.echo(f"{len(queue)} requests ranked for review, written to {output_path}")
    for line in failed[:20]:
        click.echo(f"  not classified, left out: {line}", err=True)
    if failed:
        click.echo(f"{len(failed)} rows could not be classified and were left out", err=True)


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
        df = dataset.read_labelled(_labelled_data(data_path))
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


def _load_classifier(model_dir: Path | None, rules_dir: Path | None, no_model: bool = False):
    from .classify import Classifier

    try:
        return Classifier.load(model_dir, rules_dir=rules_dir, use_model=not no_model)
    except IntakeError as exc:
        _fail(exc)


class _Jobs(click.ParamType):
    """``--jobs``: a number of worker processes, or ``auto`` for one per core."""

    name = "N|auto"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        if str(value).strip().lower() == "auto":
            from .parallel import cpu_count

            return cpu_count()
        try:
            jobs = int(value)
        except ValueError:
            jobs = 0
        if jobs < 1:
            self.fail(f"{value!r} is not a number of processes (1 or more) or 'auto'", param, ctx)
        return jobs


def _readable(result) -> str:
    d = result.to_dict()
    lines = [
        f"category:      {d['category']} ({d['scope']}, confidence {d['confidence']:.2f}"
        + (", needs review" if d["needs_review"] else "") + ")",
        "clauses:       " + "; ".join(f"{c['id']} {c['sla'][:70]}" for c in d["clauses"]),
        f"severity:      {d['severity']} (respond within {d['response_time_hours']} h)",
        f"missing info:  {', '.join(d['missing_info']) or '-'}",
        f"delay reasons: {', '.join(d['delay_reasons']) or '-'}",
        f"flags:         {', '.join(d['flags']) or '-'}",
        f"language:      {d['language']} ({d['explanation']['language']['source']}"
        + ("" if d["explanation"]["language"]["supported"] else ", no language pack: English reply") + ")",
        "rules fired:   " + (", ".join(f"{r['id']} ({'/'.join(r['matched'][:2])})" for r in d["explanation"]["rules"]) or "-"),
        "model:         " + (", ".join(f"{k}={v[0]['label']} ({v[0]['probability']:.2f})"
                                       for k, v in d["explanation"]["model"].items() if v) or "-"),
    ]
    if d["explanation"].get("review_reasons"):
        lines.append("review:        " + "; ".join(d["explanation"]["review_reasons"]))
    text = f"\n\ntext (secrets masked):\n{d['text']}" if "text" in d else ""
    return "\n".join(lines) + "\n\nsuggested reply:\n" + d["suggested_reply"] + text


@main.command()
@click.argument("text", required=False)
@click.option("--subject", default=None, help="Subject of the single request given as TEXT.")
@click.option("--input", "input_path", type=click.Path(path_type=Path, allow_dash=True), default=None,
              help="JSONL, CSV or Parquet file of requests, or - for standard input.")
@click.option("--output", "output_path", type=click.Path(path_type=Path, allow_dash=True), default=None,
              help="Where to write results (JSONL, CSV or Parquet by extension; default: standard output).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default=None,
              help="Input format (default: by extension).")
@click.option("--output-format", "out_fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default=None,
              help="Output format (default: by extension of --output, else jsonl).")
@click.option("--jobs", type=_Jobs(), default=1, show_default=True,
              help="Worker processes classifying at once ('auto': one per core); the output is the same.")
@click.option("--resume", is_flag=True,
              help="Append to --output as rows come, skipping requests already in it (to go on with a run that stopped).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output file (once the run has ended).")
@click.option("--json", "as_json", is_flag=True, help="For TEXT: print the JSON result instead of the readable summary.")
@click.option("--no-model", is_flag=True, help="Rules alone, without the trained model.")
@click.option("--include-text", is_flag=True,
              help="Add each request's text, secrets masked, to its result (field and CSV column 'text').")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@MODEL_OPTION
@RULES_OPTION
def classify(text, subject, input_path, output_path, fmt, out_fmt, jobs, resume, overwrite, as_json, no_model,
             include_text, quiet, model_dir, rules_dir) -> None:
    """Classify one request (TEXT) or a batch (--input FILE|-).

    --output is written under a temporary name and renamed when the run ends, so a
    run that fails leaves an existing file as it was; an existing file is replaced
    only with --overwrite, or added to with --resume (which skips the requests
    already in it). Exit status: 0 when every row was classified, 1 when some rows
    failed or on an error, 2 for usage errors.
    """
    import json
    import logging

    from . import batch

    if (text is None) == (input_path is None):
        raise click.UsageError("give either TEXT or --input FILE (not both)")
    to_file = output_path is not None and str(output_path) != "-"
    if resume and overwrite:
        raise click.UsageError("give --resume or --overwrite, not both")
    if (resume or overwrite) and not to_file:
        raise click.UsageError("--resume and --overwrite need --output FILE")
    if out_fmt == "parquet" and not to_file:
        raise click.UsageError("Parquet output needs --output FILE")
    clf = _load_classifier(model_dir, rules_dir, no_model)
    if text is not None:
        try:
            result = clf.classify({"text": text, "subject": subject}, include_text=include_text)
        except IntakeError as exc:
            _fail(exc)
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) if as_json else _readable(result))
        return
    try:
        in_fmt = batch.detect_format(input_path, fmt)
        out_fmt = out_fmt or batch.detect_format(output_path if to_file else None, None)
        records = batch.read_requests(input_path, in_fmt)
        total = None
        if in_fmt == "parquet":
            from .parquet import row_count

            total = row_count(input_path)
        elif str(input_path) != "-" and input_path.is_file():  # counting a pipe's lines would use them up
            with open(input_path, "rb") as f:
                total = sum(1 for _ in f) - (1 if in_fmt == "csv" else 0)
        output = (batch.OutputFile(output_path, out_fmt, resume=resume, overwrite=overwrite, include_text=include_text)
                  if to_file else None)
    except IntakeError as exc:
        _fail(exc)
    out = output.stream if output is not None else sys.stdout
    done = output.done if output is not None else batch.Done()
    counts = {"category": Counter(), "scope": Counter(), "severity": Counter()}
    failed: list[str] = []
    from tqdm import tqdm

    log = logging.getLogger("intake")
    level = log.level
    if quiet:  # no warning per failed row either: the exit status says rows failed
        log.setLevel(logging.ERROR)
    if total is not None and done.count:
        total = max(total - done.count, 0)
    progress = results = None
    try:
        if jobs > 1:
            from .parallel import classify_in_processes

            results = classify_in_processes(clf, done.skip(records), jobs, include_text=include_text,
                                            encode=batch.Encoder(out_fmt, include_text))
        else:
            results = clf.classify_many(done.skip(records), include_text=include_text)
        # one bar over all rows, made once the workers have started (its monitor thread is not forked)
        progress = tqdm(total=total, unit="req", disable=quiet or not sys.stderr.isatty(), file=sys.stderr)
        for result in batch.write_results(results, out, out_fmt, header=output is None or output.header,
                                          include_text=include_text):
            progress.update(1)
            if result.ok:
                for key in counts:
                    counts[key][getattr(result, key)] += 1
            else:
                failed.append(f"row {result.error['row']}: {result.error['message']}")
        if output is not None:
            output.commit()
        else:
            out.flush()
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other tools do
        if output is not None:
            output.discard()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        sys.exit(1)
    except OSError as exc:  # the output cannot be written (a full disk)
        _fail(output.fail(exc) if output is not None else Errors.E044.format(
            path="<standard output>", reason=exc.strerror or exc, state="the output is incomplete"))
    except IntakeError as exc:
        if output is not None:
            output.discard()
        _fail(exc)
    except BaseException:
        if output is not None:
            output.discard()
        raise
    finally:
        if results is not None:
            results.close()  # stops the workers at once when the run ends early (`| head`, an error)
        if progress is not None:
            progress.close()
        log.setLevel(level)
    if not quiet:
        n = sum(counts["category"].values())
        note = f"; {done.skipped} rows already in {output_path} skipped" if done.skipped else ""
        if not n and not failed and not done.skipped:
            note = " (the input has no rows)"
        click.echo(f"classified {n} rows, {len(failed)} failed{note}", err=True)
        if done.cut:
            click.echo(f"  a last row cut off in {output_path} ({done.cut} bytes) was removed", err=True)
        for key, c in counts.items():
            click.echo(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in c.most_common()), err=True)
        for line in failed[:20]:
            click.echo(f"  failed {line}", err=True)
        if len(failed) > 20:
            click.echo(f"  … and {len(failed) - 20} more failed rows", err=True)
    if failed:
        sys.exit(1)


@main.command()
@click.option("--input", "input_path", type=click.Path(path_type=Path, allow_dash=True), required=True,
              help="Requests, JSONL or CSV ('-' for standard input).")
@click.option("--output", "output_path", type=click.Path(path_type=Path, allow_dash=True), default=None,
              help="JSON Lines file to write (default: standard output).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None, help="Input format (default: by extension).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output file (once the run has ended).")
def mask(input_path: Path, output_path: Path | None, fmt: str | None, overwrite: bool) -> None:
    """Write each request with its text and subject masked, for pipelines that store them.

    Every field is kept; in `text` and `subject` each secret becomes [MASKED] (HTML is
    read as plain text), and `masked_secrets` counts them. A row that cannot be read is
    an error row, as with classify. Exit status: 0, or 1 when some rows failed.
    """
    import json

    from . import batch
    from .errors import InputError
    from .masking import mask_secrets
    from .normalise import masked_text
    from .request import Request

    to_file = output_path is not None and str(output_path) != "-"
    try:
        records = batch.read_requests(input_path, fmt)
        output = batch.OutputFile(output_path, "jsonl", overwrite=overwrite) if to_file else None
    except IntakeError as exc:
        _fail(exc)
    out = output.stream if output is not None else sys.stdout
    failed = 0
    try:
        for row, record in records:
            try:
                if isinstance(record, InputError):
                    raise record
                request = Request.from_mapping(record, row=row)
                text, kinds = masked_text(request.text)
                line = {**record, "text": text}
                if request.subject is not None:
                    subject = mask_secrets(request.subject)
                    line["subject"], kinds = subject.text, kinds + subject.kinds
                line["masked_secrets"] = len(kinds)
            except InputError as exc:
                failed += 1
                rid = record.get("id") if isinstance(record, dict) else exc.request_id
                line = {"id": rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None,
                        "error": {"row": row, "field": exc.field, "message": str(exc)}}
            written = json.dumps(line, ensure_ascii=False)
            if any("\ud800" <= ch <= "\udfff" for ch in written):  # a lone surrogate has no UTF-8 form
                written = json.dumps(line)
            out.write(written + "\n")
        if output is not None:
            output.commit()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OSError as exc:
        _fail(output.fail(exc) if output is not None else exc)
    except BaseException:
        if output is not None:
            output.discard()
        raise
    if failed:
        sys.exit(1)


@main.command()
def schema() -> None:
    """Print the JSON Schema of one output line."""
    import json

    from .result import result_schema

    click.echo(json.dumps(result_schema(), indent=2, ensure_ascii=False))


@main.command()
@click.option("--data", "data_paths", type=click.Path(path_type=Path), multiple=True,
              help="Labelled requests, JSONL or CSV (default: data/tickets.jsonl). Repeat it to train on several "
                   "files as one, e.g. the corpus and the desk's corrections (intake feedback export): a file "
                   "without a split column beside one with it gives training rows only.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Model folder to write (default in a source checkout: models/).")
@click.option("--text-col", default="text", show_default=True, help="Column holding the request text.")
@click.option("--label-col", default=None, help="Train a category model on this column of your own labels.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A model parameter (repeatable), e.g. --param C=16 --param 'char_ngrams=[2,5]'.")
@RULES_OPTION
def train(data_paths, out_dir, text_col, label_col, params, rules_dir) -> None:
    """Train on the train split, evaluate on the test split, save model and manifest."""
    import json
    import time

    from . import dataset, training
    from .locations import is_bundled_in_package
    from .model import RequestModel
    from .model_files import DEFAULT_MODEL_DIR

    chosen = {}
    allowed = sorted(k for k in RequestModel().get_params() if k != "rules_dir")
    for item in params:
        name, sep, raw = item.partition("=")
        if not sep or name not in allowed:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE with NAME one of {', '.join(allowed)}",
                                     param_hint="--param")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        chosen[name] = tuple(value) if isinstance(value, list) else value
    if out_dir is None:
        if is_bundled_in_package():
            _fail(Errors.E081)
        out_dir = DEFAULT_MODEL_DIR
    start = time.perf_counter()
    try:
        data = list(data_paths) if data_paths else [_labelled_data(None)]
        manifest = training.train(data, out_dir,
                                  text_col=text_col, label_col=label_col, rules_dir=rules_dir,
                                  params=chosen or None)
    except (IntakeError, ValueError) as exc:
        _fail(exc)
    click.echo(f"trained on {manifest['data']['rows_train']} rows in {time.perf_counter() - start:.1f} s; "
               f"model written to {out_dir}")
    if manifest["evaluation"]:
        click.echo(_evaluation_table(manifest["evaluation"]))


def _evaluation_table(ev: dict) -> str:
    modes = [m for m in ("rules", "model", "combined") if m in ev]
    if not modes or "clause_accuracy" not in ev[modes[0]]:
        m = ev.get("model", ev)
        rows = [f"category macro-F1  {m['category']['macro_f1'] if 'category' in m else m['macro_f1']:.3f}"]
        return "\n".join(rows)
    fields = [("category macro-F1", lambda e: e["category"]["macro_f1"]),
              ("scope accuracy", lambda e: e["scope_accuracy"]),
              ("clause accuracy", lambda e: e["clause_accuracy"]),
              ("severity accuracy", lambda e: e["severity_accuracy"]),
              ("missing_info micro-F1", lambda e: e["missing_info_micro_f1"]),
              ("delay_reasons micro-F1", lambda e: e["delay_reasons_micro_f1"]),
              ("flags micro-F1", lambda e: e["flags_micro_f1"])]
    names = {"rules": "rules only", "combined": "combined"}
    names["model"] = f"model only ({ev['model'].get('features', 'text')})" if "model" in ev else "model"
    out = [f"| field ({ev.get('rows', '?')} test rows) | " + " | ".join(names[m] for m in modes) + " |",
           "|---|" + "---:|" * len(modes)]
    for name, get in fields:
        out.append(f"| {name} | " + " | ".join(f"{get(ev[m]):.3f}" for m in modes) + " |")
    if ev.get("languages"):
        codes = list(ev["languages"])
        mode = "combined" if "combined" in ev else "rules"
        out += ["", f"Per language ({'combined' if mode == 'combined' else 'rules only'}; a row without a language "
                    "label counts as English):", "",
                "| field | " + " | ".join(f"{c} ({ev['languages'][c]['rows']})" for c in codes) + " |",
                "|---|" + "---:|" * len(codes),
                "| language detected | " + " | ".join("–" if ev['languages'][c]['detected'] is None
                                                     else f"{ev['languages'][c]['detected']:.3f}" for c in codes) + " |"]
        for name, get in fields:
            out.append(f"| {name} | " + " | ".join(f"{get(ev['languages'][c][mode]):.3f}" for c in codes) + " |")
    return "\n".join(out)


@main.command()
@click.option("--data", "data_path", type=click.Path(path_type=Path), default=None,
              help="Labelled requests, JSONL or CSV (default: data/tickets.jsonl).")
@click.option("--split", default="test", show_default=True, help="Split to evaluate on (train, test or all).")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for report.json and the category confusion matrix (PNG); "
                   "with --compare, compare.json and changes.csv.")
@click.option("--text-col", default="text", show_default=True)
@click.option("--label-col", default=None, help="Column of your own category labels.")
@click.option("--compare", "compare", nargs=2, type=click.Path(path_type=Path), default=None,
              metavar="OLD_MODEL NEW_MODEL",
              help="Compare two model folders on the same data (combined classifier) instead of evaluating one.")
@MODEL_OPTION
@RULES_OPTION
def evaluate(data_path, split, report_dir, text_col, label_col, compare, model_dir, rules_dir) -> None:
    """Per-field figures for rules only, model only and combined.

    With --compare OLD_MODEL NEW_MODEL: both models' figures side by side with the
    deltas, and every request whose labels changed (id, field, old, new, gold).
    """
    import json

    from . import dataset, training
    from .model_files import load_extra_model, load_model

    if compare:
        if model_dir is not None:
            raise click.UsageError(Errors.E063)
        _compare(compare, _labelled_data(data_path), split, report_dir, text_col, label_col, rules_dir)
        return
    predictions: dict[str, list[str]] = {}
    try:
        model, manifest = load_model(model_dir)
        text_model = load_extra_model(model_dir, training.TEXT_ONLY_MODEL)
        ev = training.evaluate(_labelled_data(data_path), model, split=split, text_col=text_col,
                               label_col=label_col, rules_dir=rules_dir, predictions=predictions,
                               text_model=text_model)
    except (IntakeError, ValueError) as exc:
        _fail(exc)
    click.echo(_evaluation_table(ev))
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "report.json").write_text(json.dumps(ev, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        png = training.plot_confusion(predictions["gold"], predictions["predicted"], report_dir / "confusion_category.png")
        click.echo(f"report written to {report_dir / 'report.json'} and {png}")


#: Changed labels printed by ``intake evaluate --compare`` (all of them go to --report).
MAX_CHANGES_SHOWN = 50


def _compare(models, data_path, split, report_dir, text_col, label_col, rules_dir) -> None:
    import json

    import pandas as pd

    from . import analysis
    from .model_files import load_model

    try:
        old, new = load_model(models[0]), load_model(models[1])
        cmp = analysis.compare_models(data_path, old, new, split=split, text_col=text_col,
                                      label_col=label_col, rules_dir=rules_dir)
    except (IntakeError, ValueError) as exc:
        _fail(exc)
    click.echo(f"old: {models[0]}\nnew: {models[1]}\n{cmp.rows} rows ({split}), combined classifier\n")
    click.echo(cmp.figures.to_string(formatters={"old": "{:.3f}".format, "new": "{:.3f}".format,
                                                  "delta": "{:+.3f}".format}))
    n_req = cmp.changes["id"].nunique()
    click.echo(f"\n{len(cmp.changes)} labels changed on {n_req} of {cmp.rows} requests")
    if not cmp.changes.empty:
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            click.echo(cmp.changes.head(MAX_CHANGES_SHOWN).to_string(index=False))
        if len(cmp.changes) > MAX_CHANGES_SHOWN:
            click.echo(f"… and {len(cmp.changes) - MAX_CHANGES_SHOWN} more (all in --report)")
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        body = {"old": str(models[0]), "new": str(models[1]), "rows": cmp.rows, "split": split,
                "figures": json.loads(cmp.figures.to_json(orient="index"))}
        (report_dir / "compare.json").write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        cmp.changes.to_csv(report_dir / "changes.csv", index=False)
        click.echo(f"report written to {report_dir / 'compare.json'} and {report_dir / 'changes.csv'}")


DATABASE_OPTION = click.option("--database", "database_url", default=None, envvar="INTAKE_DATABASE_URL",
                               show_envvar=True, metavar="URL",
                               help="The desk's database (default: sqlite:///intake.db, a file in the current "
                                    "folder); postgresql://USER:PASSWORD@HOST/DB for PostgreSQL.")


def _open_store(database_url: str | None):
    from .store import Store

    try:
        return Store.open(database_url)
    except IntakeError as exc:
        _fail(exc)


@main.command()
@click.option("--input", "input_path", type=click.Path(path_type=Path, allow_dash=True), required=True,
              help="Requests, JSONL or CSV ('-' for standard input); each needs an id.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None, help="Input format (default: by extension).")
@DATABASE_OPTION
@MODEL_OPTION
@RULES_OPTION
def ingest(input_path, fmt, database_url, model_dir, rules_dir) -> None:
    """Store and classify a batch of requests for the desk (as POST /v1/tickets does).

    A request whose id is stored already is left as it is (the same text) or reported
    (another text); a row that cannot be read is reported with its row number and the
    other rows are stored. An optional received_at column (ISO 8601) says when the
    helpdesk received each request. Exit status: 0, or 1 when some rows failed.
    """
    from datetime import datetime, timezone

    from . import batch
    from .errors import InputError
    from .request import NumberedRecord, Request

    store = _open_store(database_url)
    clf = _load_classifier(model_dir, rules_dir)
    try:
        records = list(batch.read_requests(input_path, fmt))
    except IntakeError as exc:
        _fail(exc)
    new = known = 0
    failed: list[str] = []
    readable = []
    for row, record in records:
        try:
            if isinstance(record, InputError):
                raise record
            request = Request.from_mapping(record, row=row)
            if not request.id:
                raise InputError(Errors.E072.format(where=f"row {row}: "), row=row, field="id")
            received = record.get("received_at") or None
            if received is not None:
                try:
                    received = datetime.fromisoformat(str(received))
                except ValueError:
                    raise InputError(Errors.E032.format(row=row, field="received_at", expected="an ISO 8601 time",
                                                        got=repr(str(received)[:40])), row=row) from None
                received = received.replace(tzinfo=timezone.utc) if received.tzinfo is None else received
            readable.append((row, request, received))
        except InputError as exc:  # its message names the row
            failed.append(str(exc))
    results = clf.classify_many([NumberedRecord(row, request) for row, request, _ in readable])
    for (row, request, received), result in zip(readable, results):
        if not result.ok:
            failed.append(result.error["message"])
            continue
        result.id = request.id
        try:
            _, created = store.add_ticket(request, result.to_dict(), by="cli:ingest", received_at=received,
                                          model_sha256=clf.manifest.get("model_sha256"), rules_digest=clf.rules_digest)
        except IntakeError as exc:
            failed.append(f"row {row}: {exc}")
            continue
        new, known = new + created, known + (not created)
    click.echo(f"stored {new} new requests, {known} already stored, {len(failed)} failed", err=True)
    for line in failed[:50]:
        click.echo(f"  failed {line}", err=True)
    if failed:
        sys.exit(1)


@main.group()
def users() -> None:
    """Desk users (agents who log in to /desk)."""


@users.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input "
                                                     "instead of asking for it.")
@DATABASE_OPTION
def users_add(name: str, password_stdin: bool, database_url: str | None) -> None:
    """Add desk user NAME, or give an existing one a new password (asked for twice)."""
    from .access import checked_user_name, hash_password

    try:
        checked_user_name(name)
    except IntakeError as exc:
        _fail(exc)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        _fail("the password must have at least 8 characters")
    store = _open_store(database_url)
    known = name in store.user_names()
    store.add_user(name, hash_password(password))
    click.echo(f"{'password changed for' if known else 'added'} desk user {name}")


@users.command("list")
@DATABASE_OPTION
def users_list(database_url: str | None) -> None:
    """List the desk users."""
    for name in _open_store(database_url).user_names():
        click.echo(name)


@main.group()
def feedback() -> None:
    """Agents' corrections from the desk, for retraining."""


@feedback.command("export")
@click.option("--output", "output_path", type=click.Path(path_type=Path), required=True,
              help="CSV to write, in the training format (intake train --data FILE).")
@DATABASE_OPTION
def feedback_export(output_path: Path, database_url: str | None) -> None:
    """Write every request an agent corrected, with its corrected labels, as training CSV."""
    from .feedback import write_corrections

    store = _open_store(database_url)
    try:
        n = write_corrections(store.corrected(), output_path)
    except OSError as exc:
        _fail(Errors.E044.format(path=output_path, reason=exc.strerror or exc, state="nothing written"))
    click.echo(f"{n} corrected requests written to {output_path}; train with: "
               f"intake train --data data/tickets.jsonl --data {output_path} --out DIR")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="INTAKE_HOST", show_envvar=True,
              help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, envvar="INTAKE_PORT", show_envvar=True,
              help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), envvar="INTAKE_WORKERS",
              show_envvar=True, help="Worker processes.")
@DATABASE_OPTION
@MODEL_OPTION
@RULES_OPTION
def serve(host, port, workers, database_url, model_dir, rules_dir) -> None:
    """Run the HTTP service and the agents' desk at /desk (needs the serve extra:
    pip install "intake-classifier[serve]").

    API calls need a key from INTAKE_API_KEYS (comma-separated; without one, a key is
    made and printed at start); agents log in to the desk (intake users add NAME)."""
    if database_url:
        os.environ["INTAKE_DATABASE_URL"] = database_url  # for every worker
    try:
        from .service import run
    except ImportError as exc:
        _fail(f"the HTTP service needs the serve extra ({exc.name} is missing): "
              f"pip install \"intake-classifier[serve]\" (in a checkout: pip install -e \".[serve]\")")
    try:
        run(host=host, port=port, workers=workers, model_dir=model_dir, rules_dir=rules_dir)
    except IntakeError as exc:
        _fail(exc)


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
