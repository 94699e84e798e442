"""Train and evaluate: the analyst's loop (``intake train`` / ``intake evaluate``).

Training reads labelled requests (JSONL or CSV with the columns of
``data/tickets.jsonl``), fits :class:`RequestModel` on the ``train`` split,
evaluates on the ``test`` split and saves the model with its manifest. With
``label_col`` it trains a category model for an analyst's own taxonomy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from . import spec
from .dataset import files_sha256, read_labelled, read_labelled_files
from .decide import decide
from .errors import Errors, InputError
from .features import shared_analyser
from .model import RequestModel, analyse_inputs
from .model_files import read_manifest, save_model

SPEC_TARGETS = ("category", "clause", "severity")
#: Name of the text-only twin saved beside the model for the "model only" column.
TEXT_ONLY_MODEL = "text_only"
#: Label columns of the per-field evaluation (rules / model / combined side by side).
SPEC_LABEL_COLUMNS = ("category", "scope", "clause", "severity", "missing_info", "delay_reasons", "flags")
#: Default model parameters, chosen by 5-fold cross-validation on the train split
#: (benchmarks/tune_model.py); the test split is never used to choose them.
DEFAULT_PARAMS: dict[str, Any] = {"C": 32.0, "ngram_max": 2, "min_df": 2, "max_features": 20000,
                                  "concept_features": True, "class_weight": "balanced"}


def split_frames(df: pd.DataFrame, path: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) by the ``split`` column; without one, a fixed 80/20 split by row hash."""
    if "split" not in df.columns:
        import hashlib
        key = df["id"].astype(str) if "id" in df.columns else df["text"]
        test = key.map(lambda k: int(hashlib.sha1(k.encode()).hexdigest(), 16) % 5 == 0)
        df = df.assign(split=np.where(test, "test", "train"))
    train, test = df[df["split"] == "train"], df[df["split"] == "test"]
    if train.empty:
        raise InputError(Errors.E024.format(path=path, split="train"))
    return train, test


def _has_spec_labels(df: pd.DataFrame) -> bool:
    """Whether ``df`` has every SPEC label column the per-field evaluation reads."""
    return set(SPEC_LABEL_COLUMNS) <= set(df.columns)


def _requests(df: pd.DataFrame, given_language: bool = True) -> list[dict[str, Any]]:
    """The SPEC §1 fields of each row. Evaluation leaves ``language`` out
    (``given_language=False``): it is a label there, and the classifier detects it."""
    fields = ("text", "subject", "id", "channel", "attachments", "product") + (("language",) if given_language else ())
    cols = [c for c in fields if c in df.columns]
    out = []
    for rec in df[cols].to_dict("records"):
        rec = {k: v for k, v in rec.items() if v is not None and not (isinstance(v, float) and np.isnan(v)) and v != ""}
        if "id" in rec:
            rec["id"] = str(rec["id"])
        if not rec.get("text"):
            rec["text"] = " "  # an empty labelled text still trains (it carries no features)
        out.append(rec)
    return out


def train(data: str | Path | Sequence[str | Path], out_dir: str | Path, *, text_col: str = "text",
          label_col: str | None = None, params: dict[str, Any] | None = None,
          rules_dir: str | Path | None = None) -> dict[str, Any]:
    """Fit on the train split, evaluate on the test split, save model + manifest.

    ``data`` is one labelled file or several, read as one (see
    :func:`~classifier.dataset.read_labelled_files`: agents' corrections beside the
    corpus are training rows). Returns the manifest as written (with ``model_sha256``,
    ``trained_at`` and ``libraries``)."""
    paths = [data] if isinstance(data, (str, Path)) else list(data)
    df = read_labelled_files(paths, text_col=text_col, label_col=label_col)
    data = paths[0] if len(paths) == 1 else " + ".join(str(p) for p in paths)
    own_taxonomy = label_col is not None
    # category is always required; clause and severity are learned when the data has them
    targets = ["category"] + ([] if own_taxonomy else [t for t in SPEC_TARGETS[1:] if t in df.columns])
    for t in targets:
        if t not in df.columns:
            raise InputError(Errors.E025.format(path=data, column=t, found=", ".join(df.columns)))
    for t in targets:
        empty = df[df[t].isna() | (df[t].astype(str).str.strip() == "")]
        if not empty.empty:
            first = empty.iloc[0]
            rid = first["id"] if "id" in df.columns else int(empty.index[0]) + 1
            raise InputError(Errors.E029.format(path=data, row=rid, column=t, count=len(empty)))
    train_df, test_df = split_frames(df, data)
    model = RequestModel(**{**DEFAULT_PARAMS, **(params or {}),
                            "rules_dir": None if rules_dir is None else str(rules_dir)})
    X_train = analyse_inputs(_requests(train_df), model.rules_dir)
    model.fit(X_train, train_df[targets].astype(str))
    model.rules_dir = None  # a saved model uses whichever rules folder it is loaded with
    # the same model without concept features, kept beside it for comparison (never used
    # to classify): what the vocabulary adds to the words themselves
    text_only = None
    if model.concept_features and not own_taxonomy:
        text_only = clone(model).set_params(concept_features=False).fit(X_train, train_df[targets].astype(str))
    evaluation: dict[str, Any] = {}
    if not test_df.empty:
        X_test = analyse_inputs(_requests(test_df, given_language=False), None if rules_dir is None else str(rules_dir))
        if own_taxonomy or not _has_spec_labels(test_df):
            evaluation = {"model": category_scores(test_df["category"].astype(str), model.predict(X_test))}
        else:
            evaluation = evaluate_frames(test_df, X_test, model, text_model=text_only)
    manifest = {
        "kind": "own_taxonomy" if own_taxonomy else "spec",
        "targets": targets,
        "labels": {t: sorted(map(str, train_df[t].unique())) for t in targets},
        "params": {k: v for k, v in model.get_params().items() if k != "rules_dir"},
        "data": {"path": " + ".join(Path(p).name for p in paths), "sha256": files_sha256(paths),
                 "rows_train": int(len(train_df)), "rows_test": int(len(test_df)), "text_col": text_col,
                 "label_col": label_col,
                 **({"files": [{"path": Path(p).name, "sha256": files_sha256([p])} for p in paths]}
                    if len(paths) > 1 else {})},
        # the model learnt a feature per concept: it goes with this vocabulary; the rules
        # themselves act in the decision and may change without retraining
        "rules_digest": shared_analyser(None if rules_dir is None else str(rules_dir)).ruleset.digest,
        "vocabulary_digest": shared_analyser(None if rules_dir is None else str(rules_dir)).ruleset.vocabulary_digest,
        "evaluation": evaluation,
    }
    save_model(model, out_dir, manifest, {TEXT_ONLY_MODEL: text_only} if text_only is not None else None)
    return read_manifest(out_dir)  # as written: with the model's hash, date and library versions


def category_scores(gold: Any, pred: Any) -> dict[str, Any]:
    gold, pred = np.asarray(gold, dtype=str), np.asarray(pred, dtype=str)
    labels = sorted(set(gold) | set(pred))
    p, r, f, n = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    return {"macro_f1": round(float(f1_score(gold, pred, labels=sorted(set(gold)), average="macro", zero_division=0)), 4),
            "accuracy": round(float(accuracy_score(gold, pred)), 4),
            "per_class": {lb: {"precision": round(float(a), 4), "recall": round(float(b), 4), "support": int(c)}
                          for lb, a, b, c in zip(labels, p, r, n)}}


def _micro_f1(gold: list[list[str]], pred: list[list[str]], labels: tuple[str, ...]) -> float:
    mlb = MultiLabelBinarizer(classes=list(labels))
    g, p = mlb.fit_transform(gold), mlb.transform(pred)
    if g.sum() == 0 and p.sum() == 0:
        return 1.0
    return round(float(f1_score(g, p, average="micro", zero_division=0)), 4)


def field_scores(gold: pd.DataFrame, decisions: list[Any]) -> dict[str, Any]:
    """SPEC per-field figures for one way of deciding."""
    out = {"category": category_scores(gold["category"], [d.category for d in decisions])}
    out["scope_accuracy"] = round(float(np.mean([d.scope == g for d, g in zip(decisions, gold["scope"])])), 4)
    out["clause_accuracy"] = round(float(np.mean([d.clause == g for d, g in zip(decisions, gold["clause"])])), 4)
    out["severity_accuracy"] = round(float(np.mean([d.severity == g for d, g in zip(decisions, gold["severity"])])), 4)
    for name, labels in (("missing_info", spec.MISSING_ITEMS), ("delay_reasons", spec.DELAY_REASONS),
                         ("flags", spec.FLAGS)):
        out[f"{name}_micro_f1"] = _micro_f1(list(gold[name]), [getattr(d, name) for d in decisions], labels)
    return out


def gold_languages(df: pd.DataFrame) -> list[str]:
    """Each row's language label; a row without one (the English corpus) counts as English."""
    if "language" not in df.columns:
        return ["en"] * len(df)
    return [v if isinstance(v, str) and v else "en" for v in df["language"]]


def evaluate_frames(df: pd.DataFrame, analysed: list[Any], model: RequestModel | None,
                    predictions: dict[str, list[str]] | None = None,
                    text_model: RequestModel | None = None) -> dict[str, Any]:
    """Rules only, model only and combined, side by side, on labelled rows.

    "model" is ``text_model`` (the model trained without rule-hit features) when given,
    else ``model`` alone; "combined" is the classifier as shipped: ``model`` (which reads
    rule hits as features) with the decision policy. ``predictions``, when given,
    receives the combined (or rules-only) category per row."""
    rules = [decide(a, None, "rules") for a in analysed]
    out = {"rows": int(len(df)), "rules": field_scores(df, rules)}
    final = rules
    if model is not None:
        probas = model.label_probabilities(analysed)
        alone = text_model.label_probabilities(analysed) if text_model is not None else probas
        out["model"] = field_scores(df, [decide(a, p, "model") for a, p in zip(analysed, alone)])
        out["model"]["features"] = "text only" if text_model is not None else "text and rule hits"
        final = [decide(a, p, "combined") for a, p in zip(analysed, probas)]
        out["combined"] = field_scores(df, final)
    languages = gold_languages(df)
    labelled = list(df["language"].notna() & (df["language"] != "")) if "language" in df.columns else [False] * len(df)
    if any(labelled):
        out["languages"] = {}
        for lang in sorted(set(languages), key=lambda c: (c != "en", c)):
            at = [i for i, c in enumerate(languages) if c == lang]
            part = df.iloc[at].reset_index(drop=True)
            out["languages"][lang] = {
                "rows": len(at),
                # over the rows that carry a language label (the English corpus has none)
                "detected": (round(float(np.mean([analysed[i].language.code == lang for i in at if labelled[i]])), 4)
                             if any(labelled[i] for i in at) else None),
                "rules": field_scores(part, [rules[i] for i in at]),
                **({"combined": field_scores(part, [final[i] for i in at])} if model is not None else {})}
    if predictions is not None:
        predictions["gold"] = [str(c) for c in df["category"]]
        predictions["predicted"] = [d.category for d in final]
    return out


def evaluate(data: str | Path, model: RequestModel | None, *, split: str = "test", text_col: str = "text",
             label_col: str | None = None, rules_dir: str | Path | None = None,
             predictions: dict[str, list[str]] | None = None,
             text_model: RequestModel | None = None) -> dict[str, Any]:
    """Evaluate a model (and the rules) on one split of labelled data.

    ``predictions``, when given, receives the gold and predicted category per row."""
    df = read_labelled(data, text_col=text_col, label_col=label_col)
    if "split" in df.columns and split != "all":
        df = df[df["split"] == split]
    if df.empty:
        raise InputError(Errors.E024.format(path=data, split=split))
    analysed = analyse_inputs(_requests(df, given_language=False), None if rules_dir is None else str(rules_dir))
    if label_col is not None or not _has_spec_labels(df):
        pred = [str(p) for p in model.predict(analysed)]
        if predictions is not None:
            predictions["gold"], predictions["predicted"] = [str(c) for c in df["category"]], pred
        return {"rows": int(len(df)), "model": category_scores(df["category"].astype(str), pred)}
    return evaluate_frames(df.reset_index(drop=True), analysed, model, predictions, text_model)


def plot_confusion(gold: list[str], predicted: list[str], path: str | Path) -> Path:
    """Write the category confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    labels = sorted(set(gold) | set(predicted))
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.0 * len(labels) + 2))
    ConfusionMatrixDisplay.from_predictions(gold, predicted, labels=labels, ax=ax, colorbar=False,
                                            xticks_rotation=45)
    ax.set_title("category: gold (rows) vs predicted (columns)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
