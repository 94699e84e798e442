"""Saving and loading a model: the manifest, and every way a model folder is refused.

Each refusal is asserted with its exact message, which names the path and the fix
(``intake train --out DIR``), in the library and through the CLI.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from classifier import dataset, spec, training
from classifier.cli import main
from classifier.errors import ModelError
from classifier.model import RequestModel
from classifier.model_files import DEFAULT_MODEL_DIR, MANIFEST_FILE, MODEL_FILE, load_model, save_model

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
REQUEST = "Since this morning nobody can log in to our portal, the login page just reloads"


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """80 labelled rows of data/tickets.jsonl (64 train, 16 test), as JSONL."""
    df = dataset.read_labelled(dataset.DEFAULT_DATA)
    parts = [df[(df["split"] == "train") & (df["category"] == c)].head(16) for c in
             ("installation", "product_error", "general", "development")]
    parts += [df[(df["split"] == "test") & (df["category"] == c)].head(4) for c in
              ("installation", "product_error", "general", "development")]
    path = tmp_path_factory.mktemp("data") / "small.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                            for r in dataset.to_records(pd.concat(parts))), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(small_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model")
    training.train(small_data, out, rules_dir=RULES_DIR)
    return out


@pytest.fixture
def model_dir(trained, tmp_path) -> Path:
    """A fresh copy of the trained folder that a test may damage."""
    return Path(shutil.copytree(trained, tmp_path / "model"))


def edit_manifest(model_dir: Path, change) -> None:
    path = model_dir / MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def refusal(model_dir: Path) -> str:
    with pytest.raises(ModelError) as exc:
        load_model(model_dir)
    return str(exc.value)


def test_save_load_round_trip(trained, small_data, tmp_path):
    model, manifest = load_model(trained)
    assert isinstance(model, RequestModel)
    assert manifest["targets"] == ["category", "clause", "severity"]
    for name, classes in zip(manifest["targets"], model.classes_):
        assert list(classes) == manifest["labels"][name]
    assert model.rules_dir is None  # a saved model analyses with whichever rules it is loaded beside
    # save_model + load_model keep predictions exactly
    save_model(model, tmp_path / "again", {"note": "copy"})
    again, again_manifest = load_model(tmp_path / "again")
    assert again_manifest["note"] == "copy"
    for p, q in zip(model.predict_proba([REQUEST]), again.predict_proba([REQUEST])):
        np.testing.assert_array_equal(p, q)
    assert model.predict([REQUEST])[0, 0] == "product_error"


def test_manifest_of_a_trained_model(trained, small_data):
    manifest = json.loads((trained / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["model_sha256"] == dataset.file_sha256(trained / MODEL_FILE)
    assert manifest["data"] == {"path": "small.jsonl", "sha256": dataset.file_sha256(small_data),
                                "rows_train": 64, "rows_test": 16, "text_col": "text", "label_col": None}
    assert manifest["libraries"]["scikit-learn"] == version("scikit-learn")
    assert manifest["libraries"]["spacy"] == version("spacy")
    assert manifest["labels"]["category"] == ["development", "general", "installation", "product_error"]
    assert manifest["params"] == {**training.DEFAULT_PARAMS, "char_ngrams": None}
    assert set(manifest["evaluation"]) == {"rows", "rules", "model", "combined"}


def test_tampered_model_file_is_refused(model_dir):
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    with open(model_dir / MODEL_FILE, "ab") as f:
        f.write(b"\0")
    actual = dataset.file_sha256(model_dir / MODEL_FILE)
    assert refusal(model_dir) == (
        f"[E022] Model file {model_dir / MODEL_FILE} does not match its manifest (SHA-256 {actual[:12]}, "
        f"manifest says {manifest['model_sha256'][:12]}): it was changed after training; refusing to load. "
        f"Retrain with: intake train --out {model_dir}")


def test_missing_manifest_is_refused(model_dir):
    (model_dir / MANIFEST_FILE).unlink()
    assert refusal(model_dir) == (
        f"[E021] Model manifest {model_dir / MANIFEST_FILE} is missing; refusing to load "
        f"{model_dir / MODEL_FILE}. Retrain with: intake train --out {model_dir}")


def test_missing_model_file_is_refused(model_dir, tmp_path):
    (model_dir / MODEL_FILE).unlink()
    assert refusal(model_dir) == (
        f"[E020] No model at {model_dir / MODEL_FILE}. Train one with: intake train --out {model_dir}")
    empty = tmp_path / "nothing-here"
    assert refusal(empty) == f"[E020] No model at {empty / MODEL_FILE}. Train one with: intake train --out {empty}"


@pytest.mark.parametrize("library, built", [("scikit-learn", "1.4.2"), ("spacy", "2.3.9")])
def test_other_library_version_is_refused(model_dir, library, built):
    edit_manifest(model_dir, lambda m: m["libraries"].__setitem__(library, built))
    assert refusal(model_dir) == (
        f"[E023] Model {model_dir / MODEL_FILE} was built with {library} {built}, but {library} "
        f"{version(library)} is installed; refusing to load. Retrain with: intake train --out {model_dir}")


def test_same_major_minor_other_patch_loads(model_dir):
    installed = version("scikit-learn").split(".")
    other_patch = ".".join(installed[:2] + ["999"])
    edit_manifest(model_dir, lambda m: m["libraries"].__setitem__("scikit-learn", other_patch))
    model, manifest = load_model(model_dir)
    assert manifest["libraries"]["scikit-learn"] == other_patch
    assert model.predict([REQUEST]).shape == (1, 3)


def test_unreadable_manifest_is_refused(model_dir):
    (model_dir / MANIFEST_FILE).write_text('{"model_sha256": "abc", ', encoding="utf-8")
    assert refusal(model_dir) == (
        f"[E027] Model manifest {model_dir / MANIFEST_FILE} is not valid JSON or lacks '(valid JSON)'. "
        f"Retrain with: intake train --out {model_dir}")
    (model_dir / MANIFEST_FILE).write_bytes(b"\xff\xfe not utf-8")
    assert refusal(model_dir).startswith(f"[E027] Model manifest {model_dir / MANIFEST_FILE} is not valid JSON")


@pytest.mark.parametrize("key", ["model_sha256", "libraries"])
def test_manifest_without_a_required_key_is_refused(model_dir, key):
    edit_manifest(model_dir, lambda m: m.pop(key))
    assert refusal(model_dir) == (
        f"[E027] Model manifest {model_dir / MANIFEST_FILE} is not valid JSON or lacks '{key}'. "
        f"Retrain with: intake train --out {model_dir}")


def test_cli_refuses_a_tampered_model(model_dir):
    with open(model_dir / MODEL_FILE, "ab") as f:
        f.write(b"x")
    result = CliRunner().invoke(main, ["classify", REQUEST, "--model", str(model_dir)])
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"Error: [E022] Model file {model_dir / MODEL_FILE} does not match its manifest")
    assert first.endswith(f"Retrain with: intake train --out {model_dir}")
    assert result.stdout == ""


def test_cli_refuses_a_missing_manifest(model_dir):
    (model_dir / MANIFEST_FILE).unlink()
    result = CliRunner().invoke(main, ["classify", REQUEST, "--model", str(model_dir)])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: [E021] Model manifest {model_dir / MANIFEST_FILE} is missing; refusing to "
                             f"load {model_dir / MODEL_FILE}. Retrain with: intake train --out {model_dir}\n")


def test_cli_classifies_with_a_trained_model(trained):
    result = CliRunner().invoke(main, ["classify", REQUEST, "--model", str(trained), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["category"] == "product_error"


def test_bundled_model_loads_and_its_manifest_is_complete():
    model, manifest = load_model()
    assert isinstance(model, RequestModel)
    assert set(manifest["libraries"]) >= {"scikit-learn", "spacy", "numpy", "scipy", "skops", "python"}
    assert manifest["format"] == 2 and manifest["model_file"] == MODEL_FILE == "model.skops"
    assert manifest["labels"]["category"] == sorted(spec.CATEGORIES)
    assert set(manifest["labels"]["clause"]) == set(spec.CLAUSES)
    assert manifest["labels"]["severity"] == sorted(spec.SEVERITIES)
    assert manifest["data"]["sha256"] == dataset.file_sha256(dataset.DEFAULT_DATA)  # trained on today's data
    assert manifest["model_sha256"] == dataset.file_sha256(DEFAULT_MODEL_DIR / MODEL_FILE)
    assert dt.datetime.fromisoformat(manifest["trained_at"]).tzinfo is not None
    df = dataset.read_labelled(dataset.DEFAULT_DATA)
    assert manifest["data"]["rows_train"] == int((df["split"] == "train").sum())
    assert manifest["data"]["rows_test"] == int((df["split"] == "test").sum())
    for mode in ("rules", "model", "combined"):
        figures = manifest["evaluation"][mode]
        assert 0 < figures["category"]["macro_f1"] <= 1
        assert 0 < figures["clause_accuracy"] <= 1 and 0 < figures["severity_accuracy"] <= 1


def test_same_data_and_params_give_identical_model_files(trained, small_data, tmp_path):
    second = training.train(small_data, tmp_path / "second", rules_dir=RULES_DIR)
    first = json.loads((trained / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert second["model_sha256"] == first["model_sha256"]
    assert (tmp_path / "second" / MODEL_FILE).read_bytes() == (trained / MODEL_FILE).read_bytes()


def test_text_only_twin_is_saved_verified_and_refused_when_changed(model_dir):
    from classifier.model_files import load_extra_model

    twin = load_extra_model(model_dir, training.TEXT_ONLY_MODEL)
    assert isinstance(twin, RequestModel) and twin.concept_features is False
    assert load_extra_model(model_dir, "no_such_model") is None
    path = model_dir / "text_only.skops"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelError) as exc:
        load_extra_model(model_dir, training.TEXT_ONLY_MODEL)
    assert str(exc.value).startswith(f"[E022] Model file {path} does not match its manifest")
    assert str(exc.value).endswith(f"refusing to load. Retrain with: intake train --out {model_dir}")


# ---- a model file cannot run code when loaded ----------------------------------------


class _RunsCodeWhenUnpickled:
    """What a hostile pickle does: unpickling calls a function of the attacker's choice."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_pickle_is_refused_without_being_opened(model_dir, tmp_path):
    import pickle

    marker = tmp_path / "marker"
    (model_dir / MODEL_FILE).unlink()
    (model_dir / "model.joblib").write_bytes(pickle.dumps(_RunsCodeWhenUnpickled(marker)))
    message = refusal(model_dir)
    assert message == (f"[E088] {model_dir / 'model.joblib'} is a pickle, which can run code when loaded; "
                       f"intake loads only model.skops files. Retrain with: intake train --out {model_dir}")
    assert not marker.exists()


def test_a_model_file_holding_other_types_is_refused_even_with_its_hash_in_the_manifest(model_dir):
    import hashlib
    import os

    import skops.io

    hostile = skops.io.dumps({"model": "x", "call": os.system})  # a function reference, not ours
    (model_dir / MODEL_FILE).write_bytes(hostile)
    edit_manifest(model_dir, lambda m: m.update(model_sha256=hashlib.sha256(hostile).hexdigest()))
    message = refusal(model_dir)
    assert message.startswith(f"[E089] Model file {model_dir / MODEL_FILE} holds types intake does not load (")
    assert "system" in message and message.endswith(f"Retrain with: intake train --out {model_dir}")


def test_the_file_is_read_once_so_a_swap_after_the_check_is_never_loaded(model_dir, monkeypatch):
    genuine = (model_dir / MODEL_FILE).read_bytes()
    reads = []
    real_read_bytes = Path.read_bytes

    def read_then_swap(self: Path) -> bytes:
        if self.name == MODEL_FILE:
            reads.append(self)
            return genuine if len(reads) == 1 else b"swapped after the check"
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_then_swap)
    model, _ = load_model(model_dir)
    assert isinstance(model, RequestModel) and len(reads) == 1


def test_an_extra_model_outside_the_model_folder_is_refused(model_dir, tmp_path):
    from classifier.model_files import load_extra_model

    shutil.copy(model_dir / "text_only.skops", tmp_path / "elsewhere.skops")
    edit_manifest(model_dir, lambda m: m["extra_models"]["text_only"].update(file="../elsewhere.skops"))
    with pytest.raises(ModelError) as exc:
        load_extra_model(model_dir, training.TEXT_ONLY_MODEL)
    assert str(exc.value).startswith(f"[E086] Model manifest {model_dir / MANIFEST_FILE}: extra model "
                                     "'text_only' names file '../elsewhere.skops', which is not a .skops file name")


def test_a_damaged_model_file_with_a_matching_hash_is_refused_with_the_fix(model_dir):
    import hashlib

    damaged = (model_dir / MODEL_FILE).read_bytes()[:1000]
    (model_dir / MODEL_FILE).write_bytes(damaged)
    edit_manifest(model_dir, lambda m: m.update(model_sha256=hashlib.sha256(damaged).hexdigest()))
    message = refusal(model_dir)
    assert message.startswith(f"[E087] Model file {model_dir / MODEL_FILE} is damaged and cannot be read (")


def test_the_manifest_names_rules_and_vocabulary_and_another_vocabulary_is_warned_about(trained, tmp_path, caplog):
    import logging

    from classifier import Classifier
    from classifier.rules import load_rules

    manifest = json.loads((trained / MANIFEST_FILE).read_text(encoding="utf-8"))
    bundled = load_rules(RULES_DIR)
    assert manifest["rules_digest"] == bundled.digest
    assert manifest["vocabulary_digest"] == bundled.vocabulary_digest
    with caplog.at_level(logging.WARNING, logger="intake"):
        Classifier.load(trained, rules_dir=RULES_DIR)
    assert not [r for r in caplog.records if "[W090]" in r.getMessage()]
    # a rule edited: rules act in the decision, the model's features are unchanged: no warning
    edited = Path(shutil.copytree(RULES_DIR, tmp_path / "rules"))
    severity = edited / "severity.yaml"
    severity.write_text(severity.read_text(encoding="utf-8") + "\n# a lead's edit\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="intake"):
        Classifier.load(trained, rules_dir=edited)
    assert not [r for r in caplog.records if "[W090]" in r.getMessage()]
    # a word added to a concept the model learnt from: warned, with what to do
    words = edited / "vocabulary" / "common.yaml"
    source = words.read_text(encoding="utf-8")
    assert source.count("    en: [nginx, apache,") == 1
    words.write_text(source.replace("    en: [nginx, apache,", "    en: [caddy, nginx, apache,"), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="intake"):
        Classifier.load(trained, rules_dir=edited)
    warned = [r.getMessage() for r in caplog.records if "[W090]" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(f"[W090] The model in {trained} was trained with another vocabulary")
    assert warned[0].endswith(f"Retrain with: intake train --rules {edited} --out DIR")
