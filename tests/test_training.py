"""Training and evaluation through the CLI: ``intake train`` and ``intake evaluate``.

Small labelled files are cut from data/tickets.jsonl (JSONL, and CSV with
``;``-separated list fields), plus an analyst's own taxonomy with other column
names. Bad inputs are refused with their exact messages.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from classifier import dataset
from classifier.cli import main
from classifier.model_files import MANIFEST_FILE, MODEL_FILE, load_model

CATEGORIES = ("installation", "product_error", "general", "development")
LIST_COLUMNS = ("missing_info", "delay_reasons", "flags")
#: An analyst's own routing: which team takes the request.
TEAMS = {"installation": "platform", "product_error": "platform", "general": "accounts", "development": "api"}


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    """60 rows: per category 12 train and 3 test rows."""
    df = dataset.read_labelled(dataset.DEFAULT_DATA)
    parts = [df[(df["split"] == s) & (df["category"] == c)].head(n)
             for c in CATEGORIES for s, n in (("train", 12), ("test", 3))]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def files(labelled, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    jsonl = d / "tickets.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in dataset.to_records(labelled)),
                     encoding="utf-8")
    csv = d / "tickets.csv"
    cols = ["id", "subject", "text", "category", "scope", "clause", "severity", *LIST_COLUMNS, "channel", "split"]
    flat = labelled[cols].copy()
    for col in LIST_COLUMNS:
        flat[col] = flat[col].map(";".join)
    flat.fillna("").to_csv(csv, index=False)
    teams = d / "routing.csv"
    pd.DataFrame({"ticket": labelled["id"], "body": labelled["text"], "team": labelled["category"].map(TEAMS),
                  "split": labelled["split"]}).to_csv(teams, index=False)
    return {"jsonl": jsonl, "csv": csv, "teams": teams}


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory) -> dict[str, tuple[Path, object]]:
    """One CLI training run per file; (model folder, click result)."""
    out = {}
    for name, args in (("jsonl", []), ("csv", []), ("teams", ["--text-col", "body", "--label-col", "team"])):
        d = tmp_path_factory.mktemp(f"model-{name}")
        out[name] = (d, invoke("train", "--data", files[name], "--out", d, *args))
    return out


def manifest_of(model_dir: Path) -> dict:
    return json.loads((model_dir / MANIFEST_FILE).read_text(encoding="utf-8"))


def test_train_on_jsonl(trained):
    model_dir, result = trained["jsonl"]
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("trained on 48 rows in ")
    assert f"model written to {model_dir}" in result.stdout
    assert "| field (12 test rows) | rules only | model only (text only) | combined |" in result.stdout
    assert "| category macro-F1 |" in result.stdout
    manifest = manifest_of(model_dir)
    assert manifest["kind"] == "spec" and manifest["targets"] == ["category", "clause", "severity"]
    assert manifest["data"]["rows_train"] == 48 and manifest["data"]["rows_test"] == 12
    assert manifest["labels"]["category"] == sorted(CATEGORIES)
    assert (model_dir / MODEL_FILE).exists()


def test_csv_with_semicolon_lists_trains_the_same_model(trained, labelled):
    (csv_dir, result), (jsonl_dir, _) = trained["csv"], trained["jsonl"]
    assert result.exit_code == 0, result.output
    assert any(";" in v for v in labelled["missing_info"].map(";".join))  # the CSV really holds lists
    csv_manifest, jsonl_manifest = manifest_of(csv_dir), manifest_of(jsonl_dir)
    # the same rows as CSV and as JSONL: the same model and the same per-field figures
    assert csv_manifest["model_sha256"] == jsonl_manifest["model_sha256"]
    assert csv_manifest["evaluation"] == jsonl_manifest["evaluation"]
    assert csv_manifest["data"]["path"] == "tickets.csv"


def test_retrain_on_own_taxonomy_with_other_column_names(trained, files):
    model_dir, result = trained["teams"]
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("trained on 48 rows in ")
    assert "category macro-F1  " in result.stdout
    manifest = manifest_of(model_dir)
    assert manifest["kind"] == "own_taxonomy"
    assert manifest["targets"] == ["category"]
    assert manifest["labels"] == {"category": ["accounts", "api", "platform"]}
    assert manifest["data"]["text_col"] == "body" and manifest["data"]["label_col"] == "team"
    figures = manifest["evaluation"]["model"]
    assert set(figures["per_class"]) == {"accounts", "api", "platform"}
    assert figures["macro_f1"] > 0.5
    model, _ = load_model(model_dir)
    assert model.predict(["Where do I find the REST API webhook for adding CRM leads from our own app?"])[0] == "api"
    # and it evaluates on the same columns
    ev = invoke("evaluate", "--model", model_dir, "--data", files["teams"], "--text-col", "body",
                "--label-col", "team")
    assert ev.exit_code == 0, ev.output
    assert ev.stdout == f"category macro-F1  {figures['macro_f1']:.3f}\n"


def test_evaluate_writes_report_and_confusion_png(trained, files, tmp_path):
    model_dir, _ = trained["jsonl"]
    report = tmp_path / "report"
    result = invoke("evaluate", "--model", model_dir, "--data", files["jsonl"], "--report", report)
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(f"report written to {report / 'report.json'} and "
                                  f"{report / 'confusion_category.png'}\n")
    ev = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert ev == manifest_of(model_dir)["evaluation"]  # the test split, as at training time
    assert ev["rows"] == 12
    fields = {"category", "scope_accuracy", "clause_accuracy", "severity_accuracy",
              "missing_info_micro_f1", "delay_reasons_micro_f1", "flags_micro_f1"}
    assert ev["model"]["features"] == "text only"  # the ablation twin saved beside the model
    for mode in ("rules", "model", "combined"):
        assert set(ev[mode]) - {"features"} == fields
        assert set(ev[mode]["category"]) == {"macro_f1", "accuracy", "per_class"}
    png = (report / "confusion_category.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_missing_label_column_is_refused(files, tmp_path):
    result = invoke("train", "--data", files["teams"], "--out", tmp_path / "m", "--text-col", "body",
                    "--label-col", "squad")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: [E025] Training data {files['teams']}: column 'squad' is missing. "
                             "Columns found: ticket, body, team, split\n")
    assert not (tmp_path / "m").exists()


def test_missing_text_column_is_refused(files, tmp_path):
    result = invoke("train", "--data", files["teams"], "--out", tmp_path / "m", "--label-col", "team")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: [E025] Training data {files['teams']}: column 'text' is missing. "
                             "Columns found: ticket, body, team, split\n")


def test_spec_data_without_category_is_refused(tmp_path):
    data = tmp_path / "unlabelled.csv"
    data.write_text("id,text,split\nr1,Our portal is down since the update,train\n", encoding="utf-8")
    result = invoke("train", "--data", data, "--out", tmp_path / "m")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: [E025] Training data {data}: column 'category' is missing. "
                             "Columns found: id, text, split\n")


def test_no_train_rows_is_refused(tmp_path):
    data = tmp_path / "only_test.csv"
    data.write_text("body,team,split\n"
                    "Please send the invoice for March again,accounts,test\n"
                    "The webhook for crm.lead.add returns 401,api,test\n", encoding="utf-8")
    result = invoke("train", "--data", data, "--out", tmp_path / "m", "--text-col", "body", "--label-col", "team")
    assert result.exit_code == 1
    assert result.stderr == f"Error: [E024] Training data {data} has no rows in split 'train'.\n"
    assert not (tmp_path / "m").exists()


def test_evaluate_on_an_empty_split_is_refused(trained, tmp_path):
    model_dir, _ = trained["teams"]
    data = tmp_path / "only_train.csv"
    data.write_text("body,team,split\nPlease send the invoice for March again,accounts,train\n", encoding="utf-8")
    result = invoke("evaluate", "--model", model_dir, "--data", data, "--text-col", "body", "--label-col", "team")
    assert result.exit_code == 1
    assert result.stderr == f"Error: [E024] Training data {data} has no rows in split 'test'.\n"


def test_spec_data_with_category_only_trains_a_category_model(labelled, tmp_path):
    data = tmp_path / "categories.csv"
    labelled[["id", "subject", "text", "category", "split"]].fillna("").to_csv(data, index=False)
    result = invoke("train", "--data", data, "--out", tmp_path / "m")
    assert result.exit_code == 0, result.output
    manifest = manifest_of(tmp_path / "m")
    assert manifest["targets"] == ["category"]
    assert set(manifest["evaluation"]) == {"model"}  # no clause/severity labels: category figures only
    assert result.stdout.endswith(f"category macro-F1  {manifest['evaluation']['model']['macro_f1']:.3f}\n")


def test_own_labels_from_a_spec_column_replace_its_category(files, tmp_path):
    # the corpus has a SPEC category column; training on --label-col severity must use the severity labels
    df = dataset.read_labelled(files["jsonl"], label_col="severity")
    assert list(df.columns).count("category") == 1 and "severity" not in df.columns
    assert set(df["category"]) <= {"critical", "high", "medium", "low"}
    result = invoke("train", "--data", files["jsonl"], "--out", tmp_path / "m", "--label-col", "severity")
    assert result.exit_code == 0, result.output
    manifest = manifest_of(tmp_path / "m")
    assert manifest["kind"] == "own_taxonomy" and manifest["data"]["label_col"] == "severity"
    assert manifest["labels"]["category"] == sorted(set(df.loc[df["split"] == "train", "category"]))
