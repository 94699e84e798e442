"""The analysts' workbench (classifier/analysis.py): rule report, review queue, model comparison.

Figures are hand-computed on tests/fixtures/analysis/ (6 requests, 3 rules); the
commands also run on small subsets of data/tickets.jsonl and on a CSV export with
the analyst's own column names.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from classifier import analysis, dataset, spec, training
from classifier.cli import main
from classifier.errors import Errors
from classifier.features import Analysed
from classifier.matching import Hit
from classifier.model_files import load_model
from classifier.request import Request
from classifier.result import Result

FIXTURES = Path(__file__).parent / "fixtures" / "analysis"
RULES = FIXTURES / "rules"
TICKETS = FIXTURES / "tickets.jsonl"
EXPORT = FIXTURES / "export.csv"
#: An analyst's own taxonomy for the CSV export built from data/tickets.jsonl.
TEAMS = {"product_error": "bugs", "updates": "bugs", "installation": "setup", "performance": "setup",
         "development": "dev", "general": "howto", "other": "sales"}


def run(*args: str) -> "object":
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return pd.read_json(dataset.DEFAULT_DATA, lines=True, dtype=False)


@pytest.fixture(scope="module")
def subset(corpus: pd.DataFrame, tmp_path_factory) -> Path:
    """90 labelled tickets (60 train, 30 test) as JSONL."""
    df = pd.concat([corpus[corpus["split"] == "train"].sample(60, random_state=7),
                    corpus[corpus["split"] == "test"].sample(30, random_state=7)])
    path = tmp_path_factory.mktemp("data") / "subset.jsonl"
    df.to_json(path, orient="records", lines=True, force_ascii=False)
    return path


@pytest.fixture(scope="module")
def export(subset: Path, tmp_path_factory) -> Path:
    """The same tickets as a helpdesk CSV export: other column names, own taxonomy in 'team'."""
    df = pd.read_json(subset, lines=True, dtype=False)
    out = pd.DataFrame({"ticket_no": df["id"], "title": df["subject"], "message": df["text"],
                        "team": df["category"].map(TEAMS), "split": df["split"]})
    path = tmp_path_factory.mktemp("export") / "helpdesk.csv"
    out.to_csv(path, index=False)
    return path


# ---- rule report ---------------------------------------------------------------------------
def fixture_report(**kw) -> pd.DataFrame:
    return analysis.rule_report(kw.pop("data", TICKETS), rules_dir=RULES, **kw)


def test_rule_report_hand_computed_figures():
    # fires: payment t1 t2; error t2 t3 t4 t5; down t3 t6 (6 requests)
    # gold clauses: t1 3.5.out.6, t2 3.4.in.1, t3 3.4.in.1, t4 3.4.in.2, t5 3.6.in.1, t6 3.6.in.2
    report = fixture_report()
    assert list(report.index) == ["3.5.out.6#payment", "3.4.in.1#error", "severity.critical.down"]
    assert list(report.columns) == list(analysis.SUMMARY_COLUMNS)
    pay, err, down = (report.loc[r] for r in report.index)
    assert (pay["kind"], pay["label"], pay["fires"]) == ("clause", "3.5.out.6", 2)
    assert (pay["coverage"], pay["overlaps"], pay["conflicts"]) == (2 / 6, 1 / 6, 1 / 6)  # t2: with the error rule
    assert (pay["correct"], pay["incorrect"], pay["precision"], pay["fp_examples"]) == (1, 1, 0.5, "t2")
    assert (err["coverage"], err["overlaps"], err["conflicts"]) == (4 / 6, 1 / 6, 2 / 6)
    assert (err["correct"], err["incorrect"], err["precision"], err["fp_examples"]) == (2, 2, 0.5, "t4;t5")
    # a severity rule firing with clause rules is no overlap: only rules of the same kind count
    assert (down["coverage"], down["overlaps"], down["conflicts"]) == (2 / 6, 0.0, 1 / 6)
    assert (down["correct"], down["incorrect"], down["precision"], down["fp_examples"]) == (1, 1, 0.5, "t6")


def test_rule_report_own_taxonomy_judges_clause_rules_only_at_spec_category_level():
    own = fixture_report(data=EXPORT, text_col="message", label_col="team")  # dev / bugs / howto
    assert own.loc["3.4.in.1#error", "coverage"] == 4 / 6
    assert own.loc["3.5.out.6#payment", "overlaps"] == 1 / 6
    assert own[["correct", "incorrect", "conflicts"]].to_numpy().sum() == 0
    assert own["precision"].isna().all()
    area = fixture_report(data=EXPORT, text_col="message", label_col="area")  # SPEC categories
    err = area.loc["3.4.in.1#error"]
    # t4 is product_error like the rule's clause: right category, other clause
    assert (err["correct"], err["incorrect"], err["precision"], err["fp_examples"]) == (3, 1, 0.75, "5")
    assert area.loc["severity.critical.down", "precision"] != area.loc["severity.critical.down", "precision"]  # NaN


def hit(rule_id: str, kind: str, label: str) -> Hit:
    return Hit(rule_id, kind, label, 0, 4, "text", "prose", 1.0)


def analysed(rid: str, *hits: Hit) -> Analysed:
    return Analysed(Request(text="x", id=rid), None, list(hits), [])  # type: ignore[arg-type]


def test_rule_summary_judges_info_delay_and_flag_rules_against_their_gold_field():
    url, cloud = hit("info.url", "info", "url"), hit("info.cloud", "info", "cloud")
    steps = hit("info.steps", "info", "steps_to_reproduce")
    rude, split = hit("delay.rude", "delay", "abusive_language"), hit("flag.split", "flag", "multiple_issues")
    gold = pd.DataFrame([
        {"id": "a", "category": "product_error", "missing_info": ["url"], "delay_reasons": ["abusive_language"], "flags": []},
        {"id": "b", "category": "product_error", "missing_info": [], "delay_reasons": [], "flags": ["multiple_issues"]},
        {"id": "c", "category": "general", "missing_info": [], "delay_reasons": [], "flags": []},
        {"id": "d", "category": "installation", "missing_info": ["url"], "delay_reasons": [], "flags": []},
    ])
    rows = [analysed("a", url, cloud, rude), analysed("b", url, steps, split),
            analysed("c", url, steps, rude, split), analysed("d", steps)]
    s = analysis.rule_summary(rows, gold)
    # url: a says missing (conflict), b present (correct), c general requires nothing (not judged)
    assert s.loc["info.url", ["fires", "correct", "incorrect", "fp_examples"]].tolist() == [3, 1, 1, "a"]
    assert s.loc["info.url", "overlaps"] == 3 / 4  # a with cloud, b and c with steps
    # steps: b judged correct; c (general) and d (installation does not require steps) not judged
    assert s.loc["info.steps", ["correct", "incorrect", "precision"]].tolist() == [1, 0, 1.0]
    assert pd.isna(s.loc["info.cloud", "precision"]) and s.loc["info.cloud", "coverage"] == 1 / 4
    assert s.loc["delay.rude", ["correct", "incorrect", "fp_examples"]].tolist() == [1, 1, "c"]
    assert s.loc["flag.split", ["correct", "incorrect", "conflicts"]].tolist() == [1, 1, 1 / 4]
    assert list(s.index) == sorted(s.index)  # without a rule list: the rules that fired, by id


def test_rule_summary_lists_rules_that_never_fired_and_refuses_misaligned_input():
    ruleset = analysis.ruleset_of(RULES)
    gold = pd.DataFrame([{"id": "q", "clause": "3.6.in.1"}])
    s = analysis.rule_summary([analysed("q")], gold, ruleset)
    assert s["fires"].tolist() == [0, 0, 0] and s["precision"].isna().all()
    with pytest.raises(ValueError) as err:
        analysis.rule_summary([], gold, ruleset)
    assert str(err.value) == Errors.E060.format(analysed=0, gold=1)


def test_rules_report_command_prints_and_writes_csv(tmp_path):
    out = tmp_path / "report.csv"
    result = run("rules", "report", "--data", TICKETS, "--rules", RULES, "--out", out)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("3.4.in.1#error"))
    assert line.split() == ["3.4.in.1#error", "clause", "3.4.in.1", "4", "0.667", "0.167", "0.333", "0.500",
                            "2", "2", "t4;t5"]
    assert "3 rules; 3 fired; 3 judged against gold labels" in result.output
    csv = pd.read_csv(out, index_col="rule", keep_default_na=False)
    assert csv.loc["severity.critical.down", "precision"] == 0.5
    assert csv.loc["3.5.out.6#payment", "coverage"] == 0.3333


def test_rules_report_command_on_the_corpus_and_a_csv_export(subset, export):
    result = run("rules", "report", "--data", subset)
    assert result.exit_code == 0, result.output
    ruleset = analysis.ruleset_of(None)
    assert f"{len(ruleset.rules)} rules;" in result.output
    report = analysis.rule_report(subset)
    assert list(report.index) == [r.id for r in ruleset.rules]
    assert (report["coverage"] == report["fires"] / 90).all()
    judged = report["correct"] + report["incorrect"]
    assert (judged <= report["fires"]).all() and report["precision"].notna().any()
    own = run("rules", "report", "--data", export, "--text-col", "message", "--label-col", "team")
    assert own.exit_code == 0, own.output
    assert own.output.splitlines()[-1].endswith("judged against gold labels")
    missing = run("rules", "report", "--data", export)
    assert missing.exit_code == 1
    assert missing.output.strip() == "Error: " + Errors.E025.format(
        path=export, column="text", found="ticket_no, title, message, team, split")


# ---- review queue ---------------------------------------------------------------------------
class StubClassifier:
    """Fixed results per id, so the ranking can be computed by hand."""

    def __init__(self, outputs: dict[str, tuple[str, float, list[str]]]) -> None:
        self.outputs = outputs

    def classify_many(self, records):
        for row, rec in enumerate(records, 1):
            if not rec["text"].strip():
                yield Result(id=rec["id"], error={"row": row, "field": "text",
                                                  "message": Errors.E031.format(row=row)})
                continue
            category, confidence, reasons = self.outputs[rec["id"]]
            yield Result(id=rec["id"], category=category, scope="in_scope",
                         clauses=[{"id": "3.4.in.1", "sla": ""}], severity="medium", response_time_hours=24,
                         missing_info=["url"], delay_reasons=["missing_information"], flags=[],
                         confidence=confidence, needs_review=bool(reasons),
                         explanation={"review_reasons": reasons}, suggested_reply="")


def test_review_queue_ranks_by_documented_score():
    disagree = "rules point to development (3.5.out.2), the model to product_error"
    stub = StubClassifier({"a": ("product_error", 0.9, []), "b": ("product_error", 0.6, [disagree]),
                           "c": ("product_error", 0.3, []), "d": ("general", 0.8, []),
                           "e": ("other", 0.7, [])})
    df = pd.DataFrame({"id": list("abcdef"), "text": ["CRM deals page fails"] * 5 + [""]})
    queue = analysis.review_queue(df, stub)
    # score = (1 - confidence) + 0.5 * disagreement + 0.3 * (1 - n(category) / n(most common))
    assert queue["id"].tolist() == ["b", "c", "e", "d", "a"]
    assert queue["score"].tolist() == [0.9, 0.7, 0.5, 0.4, 0.1]
    assert queue["rank"].tolist() == [1, 2, 3, 4, 5]
    assert queue.loc[0, "reason"] == "confidence 0.60; " + disagree
    assert queue.loc[2, "reason"] == "confidence 0.70; rare predicted category other (1 of 5)"
    assert queue.attrs["failed"] == ["row 6: " + Errors.E031.format(row=6)]
    assert analysis.review_queue(df, stub, limit=2)["id"].tolist() == ["b", "c"]


@pytest.mark.filterwarnings("ignore:The number of unique classes:UserWarning")
def test_review_command_writes_a_fillable_csv_that_trains(corpus, tmp_path):
    labelled = corpus.sample(45, random_state=3)
    unlabelled = labelled[list(analysis.REQUEST_COLUMNS)].copy()
    unlabelled.loc[unlabelled.index[0], "text"] = "   "  # unreadable: left out, reported
    src = tmp_path / "new.jsonl"
    unlabelled.to_json(src, orient="records", lines=True, force_ascii=False)
    out = tmp_path / "review.csv"
    result = run("review", "--input", src, "--output", out)
    assert result.exit_code == 0, result.output
    assert "44 requests ranked for review" in result.output
    queue = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(queue.columns) == list(analysis.REVIEW_COLUMNS)
    assert (queue[["category", "clause", "severity", "missing_info"]] == "").all().all()
    assert set(queue["suggested_clause"]) <= set(spec.CLAUSES)
    assert queue["score"].astype(float).is_monotonic_decreasing
    # the analyst fills the gold columns ...
    gold = labelled.set_index("id")
    for col in ("category", "scope", "clause", "severity", "missing_info", "delay_reasons", "flags"):
        queue[col] = queue["id"].map(lambda i: ";".join(gold.at[i, col]) if isinstance(gold.at[i, col], list)
                                     else gold.at[i, col])
    queue.to_csv(out, index=False)
    # ... and trains on the file
    trained = run("train", "--data", out, "--out", tmp_path / "model")
    assert trained.exit_code == 0, trained.output
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["data"]["rows_train"] + manifest["data"]["rows_test"] == 44
    assert set(manifest["labels"]["category"]) <= set(labelled["category"].iloc[1:])


def test_review_and_report_refuse_inputs_without_a_usable_request(tmp_path):
    blank = tmp_path / "blank.csv"
    blank.write_text("id,text\nHD-1,\nHD-2,   \n", encoding="utf-8")
    result = run("review", "--input", blank, "--output", tmp_path / "q.csv")
    assert result.exit_code == 1
    first = "row 1: " + Errors.E031.format(row=1)
    assert result.output.strip() == "Error: " + Errors.E064.format(path=blank, failed=2, first=first)
    assert not (tmp_path / "q.csv").exists()
    header_only = tmp_path / "empty.csv"
    header_only.write_text("id,text,clause\n", encoding="utf-8")
    report = run("rules", "report", "--data", header_only)
    assert report.exit_code == 1
    assert report.output.strip() == "Error: " + Errors.E061.format(path=header_only)


def test_review_command_on_a_csv_export(export, tmp_path):
    out = tmp_path / "queue.csv"
    result = run("review", "--input", export, "--output", out, "--text-col", "message", "--limit", "5")
    assert result.exit_code == 0, result.output
    queue = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(queue) == 5 and queue["rank"].tolist() == ["1", "2", "3", "4", "5"]
    assert queue["text"].str.len().gt(0).all() and queue["id"].str.fullmatch(r"\d+").all()
    bad = run("review", "--input", export, "--output", out, "--limit", "0")
    assert bad.exit_code == 2


# ---- comparing models -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_models(subset, tmp_path_factory) -> tuple[Path, Path]:
    """Two SPEC models from the same 60 training rows, one strongly regularised."""
    root = tmp_path_factory.mktemp("models")
    with warnings.catch_warnings():  # 60 rows, 30-odd clauses: sklearn notes it, rightly
        warnings.filterwarnings("ignore", "The number of unique classes", UserWarning)
        training.train(subset, root / "old", params={"C": 0.05})
        training.train(subset, root / "new")
    return root / "old", root / "new"


def test_compare_models_figures_and_changed_labels(subset, two_models):
    old, new = load_model(two_models[0]), load_model(two_models[1])
    cmp = analysis.compare_models(subset, old, new)
    assert cmp.rows == 30
    assert list(cmp.figures.columns) == ["old", "new", "delta"]
    assert "clause accuracy" in cmp.figures.index
    assert (cmp.figures["delta"] == (cmp.figures["new"] - cmp.figures["old"]).round(4)).all()
    ev = training.evaluate(subset, new[0])
    assert cmp.figures.loc["clause accuracy", "new"] == ev["combined"]["clause_accuracy"]
    assert not cmp.changes.empty
    df = dataset.read_labelled(subset)
    test = df[df["split"] == "test"].reset_index(drop=True)
    a = analysis.analyse_frame(test)
    before = dict(zip(test["id"], analysis.decisions(old[0], a)))
    after = dict(zip(test["id"], analysis.decisions(new[0], a)))
    expected = {(i, f) for i in test["id"] for f in analysis.SUGGESTED
                if getattr(before[i], f) != getattr(after[i], f)}
    assert set(zip(cmp.changes["id"], cmp.changes["field"])) == expected
    row = cmp.changes.iloc[0]
    assert row["gold"] == analysis._list_text(test.set_index("id").at[row["id"], row["field"]])
    same = analysis.compare_models(subset, new, new)
    assert same.changes.empty and (same.figures["delta"] == 0).all()


def test_evaluate_compare_command(subset, two_models, tmp_path):
    result = run("evaluate", "--compare", *two_models, "--data", subset, "--report", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    assert "30 rows (test), combined classifier" in result.output
    changes = pd.read_csv(tmp_path / "cmp" / "changes.csv", dtype=str, keep_default_na=False)
    assert f"{len(changes)} labels changed on {changes['id'].nunique()} of 30 requests" in result.output
    body = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(body["figures"]["clause accuracy"]) == {"old", "new", "delta"}
    clash = run("evaluate", "--compare", *two_models, "--model", two_models[0], "--data", subset)
    assert clash.exit_code == 2 and Errors.E063 in clash.output


def test_evaluate_compare_own_taxonomy_on_a_csv_export(export, two_models, tmp_path):
    for name, c in (("own_old", 0.05), ("own_new", 8.0)):
        training.train(export, tmp_path / name, text_col="message", label_col="team", params={"C": c})
    result = run("evaluate", "--compare", tmp_path / "own_old", tmp_path / "own_new", "--data", export,
                 "--text-col", "message", "--label-col", "team")
    assert result.exit_code == 0, result.output
    figures = [x.split()[0:2] for x in result.output.splitlines() if x.startswith("category ")]
    assert figures == [["category", "macro-F1"], ["category", "accuracy"]]
    assert "of 30 requests" in result.output
    mixed = run("evaluate", "--compare", two_models[0], tmp_path / "own_new", "--data", export,
                "--text-col", "message", "--label-col", "team")
    assert mixed.exit_code == 1
    assert mixed.output.strip() == "Error: " + Errors.E062.format(old="spec", new="own_taxonomy")
