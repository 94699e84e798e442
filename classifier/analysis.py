"""The analysts' workbench: audit the rules, pick requests to label, compare models.

Three tools over the library, each a function the CLI, the notebook and the tests
call directly:

- :func:`rule_summary` (``intake rules report``): one row per rule id with its
  coverage, overlaps, conflicts and empirical precision against gold labels, in
  the manner of Snorkel's ``LFAnalysis.lf_summary``.
- :func:`review_queue` (``intake review``): the requests that most need a human
  label, as a CSV an analyst fills in and feeds back to ``intake train``.
- :func:`compare_models` (``intake evaluate --compare``): two models on the same
  data, per-field figures side by side and the labels that changed.

Rule report definitions (``n`` = requests in the data; a rule *fires* on a request
when it has at least one hit there, however many):

- ``coverage``  = requests it fires on / n.
- ``overlaps``  = requests it fires on together with at least one other rule of the
  same kind (clause, severity, info, delay or flag) / n.
- ``conflicts`` = requests it fires on where the gold label disagrees with it / n
  (= ``incorrect`` / n). Snorkel counts disagreement between rules here; with gold
  labels at hand the disagreement that matters is with the gold.
- ``precision`` = correct / (correct + incorrect); ``correct`` and ``incorrect``
  count the fires that could be judged; ``fp_examples`` the ids of up to 3
  incorrect fires.

How a fire is judged, per kind (see :data:`JUDGED_BY`):

- ``clause``: correct when the gold ``clause`` is the rule's clause. Without a
  ``clause`` column (an analyst's own taxonomy via ``--label-col``) it is judged at
  category level when every gold ``category`` is a SPEC category (correct when it
  is the category of the rule's clause); otherwise not judged (coverage and
  overlaps only).
- ``severity``: correct when the gold ``severity`` is the rule's level.
- ``info`` present-detectors (``url``, ``version``, ``edition``,
  ``steps_to_reproduce``): judged only where the gold category requires the item
  (SPEC §5); incorrect when the gold ``missing_info`` lists it, correct otherwise.
  The ``not_<item>`` look-alike markers and the product signals (``cloud``,
  ``self_hosted``, ``server_access``, ``up_to_date_claim``) have no gold field and
  are not judged.
- ``delay`` / ``flag``: correct when the gold ``delay_reasons`` / ``flags`` list the
  rule's label.

A fire that cannot be judged (no gold field for it) counts in coverage and
overlaps only; its ``precision`` is empty (NaN).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from . import spec
from .decide import Decision, decide
from .errors import Errors, InputError, ModelError
from .features import Analysed, shared_analyser
from .model import analyse_inputs
from .rules import Rule, RuleSet

SUMMARY_COLUMNS = ("kind", "label", "fires", "coverage", "overlaps", "conflicts", "precision",
                   "correct", "incorrect", "fp_examples")
#: Gold column each kind of rule is judged against.
JUDGED_BY = {"clause": "clause", "severity": "severity", "info": "missing_info",
             "delay": "delay_reasons", "flag": "flags"}
PRESENT_ITEMS = frozenset(spec.MISSING_ITEMS)
MAX_FP_EXAMPLES = 3


# ---- shared helpers ----------------------------------------------------------------
def requests_of(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The SPEC §1 request fields of each row (empty values left out, as training does)."""
    from .training import _requests

    return _requests(df)


def analyse_frame(df: pd.DataFrame, rules_dir: str | Path | None = None) -> list[Analysed]:
    """Normalise, mask and match every row of ``df`` (a frame from ``dataset.read_labelled``)."""
    return analyse_inputs(requests_of(df), None if rules_dir is None else str(rules_dir))


def ruleset_of(rules_dir: str | Path | None = None) -> RuleSet:
    """The rules ``analyse_frame`` matched with (loaded once per folder)."""
    return shared_analyser(None if rules_dir is None else str(rules_dir)).ruleset


def _ids(gold: pd.DataFrame, analysed: Sequence[Any]) -> list[str]:
    if "id" in gold.columns:
        return [str(v) for v in gold["id"]]
    return [str(a.request.id) if getattr(a.request, "id", None) else str(i + 1) for i, a in enumerate(analysed)]


def _clause_mode(gold: pd.DataFrame) -> str | None:
    """How clause rules are judged: ``clause``, ``category`` or None (not judged)."""
    if "clause" in gold.columns:
        return "clause"
    if "category" in gold.columns and set(map(str, gold["category"])) <= set(spec.CATEGORIES):
        return "category"
    return None


def _judge(kind: str, label: str, row: dict[str, Any], clause_mode: str | None) -> bool | None:
    """True (correct), False (conflicts with the gold) or None (cannot be judged)."""
    if kind == "clause":
        if clause_mode == "clause":
            return str(row["clause"]) == label
        if clause_mode == "category":
            return str(row["category"]) == spec.clause_category(label)
        return None
    column = JUDGED_BY[kind]
    if column not in row:
        return None
    if kind == "severity":
        return str(row[column]) == label
    if kind == "info":
        if label not in PRESENT_ITEMS or label not in spec.REQUIRED_INFO.get(str(row.get("category")), ()):
            return None
        return label not in (row[column] or [])
    return label in (row[column] or [])


def rule_summary(analysed: Sequence[Analysed], gold: pd.DataFrame,
                 rules: RuleSet | Iterable[Rule] | None = None) -> pd.DataFrame:
    """Per-rule audit (like Snorkel's ``lf_summary``); the module docstring defines each column.

    ``analysed[i]`` is the analysis of ``gold.iloc[i]``. ``gold`` holds whichever label
    columns exist (``clause``, ``category``, ``severity``, ``missing_info``,
    ``delay_reasons``, ``flags``; list fields as lists) and ``id``. ``rules`` adds a
    row for every rule, fired or not; without it only rules that fired are listed.
    """
    if len(analysed) != len(gold):
        raise ValueError(Errors.E060.format(analysed=len(analysed), gold=len(gold)))
    rule_list = list(rules.rules if isinstance(rules, RuleSet) else (rules or []))
    meta: dict[str, tuple[str, str]] = {r.id: (r.kind, r.label) for r in rule_list}
    for a in analysed:
        for h in a.hits:
            meta.setdefault(h.rule_id, (h.kind, h.label))
    order = [r.id for r in rule_list] + sorted(set(meta) - {r.id for r in rule_list})
    n = len(gold)
    ids = _ids(gold, analysed)
    clause_mode = _clause_mode(gold)
    rows = gold.to_dict("records")
    stats = {rid: {"fires": 0, "overlaps": 0, "correct": 0, "incorrect": 0, "fp": []} for rid in order}
    for a, row, rid_ in zip(analysed, rows, ids):
        fired = sorted({h.rule_id for h in a.hits})
        per_kind = Counter(meta[r][0] for r in fired)
        for r in fired:
            kind, label = meta[r]
            s = stats[r]
            s["fires"] += 1
            if per_kind[kind] > 1:
                s["overlaps"] += 1
            verdict = _judge(kind, label, row, clause_mode)
            if verdict is True:
                s["correct"] += 1
            elif verdict is False:
                s["incorrect"] += 1
                if len(s["fp"]) < MAX_FP_EXAMPLES:
                    s["fp"].append(rid_)
    records = []
    for rid in order:
        s = stats[rid]
        judged = s["correct"] + s["incorrect"]
        records.append({
            "kind": meta[rid][0], "label": meta[rid][1], "fires": s["fires"],
            "coverage": s["fires"] / n if n else 0.0, "overlaps": s["overlaps"] / n if n else 0.0,
            "conflicts": s["incorrect"] / n if n else 0.0,
            "precision": s["correct"] / judged if judged else np.nan,
            "correct": s["correct"], "incorrect": s["incorrect"], "fp_examples": ";".join(s["fp"]),
        })
    out = pd.DataFrame(records, index=pd.Index(order, name="rule"), columns=list(SUMMARY_COLUMNS))
    return out


def rule_report(data: str | Path, *, text_col: str = "text", label_col: str | None = None,
                rules_dir: str | Path | None = None) -> pd.DataFrame:
    """:func:`rule_summary` of every rule in ``rules_dir`` over a labelled file."""
    from .dataset import read_labelled

    df = read_labelled(data, text_col=text_col, label_col=label_col).reset_index(drop=True)
    if df.empty:
        raise InputError(Errors.E061.format(path=data))
    return rule_summary(analyse_frame(df, rules_dir), df, ruleset_of(rules_dir))


# ---- model outputs per request --------------------------------------------------------
def model_probas(model: Any, analysed: Sequence[Analysed]) -> list[dict[str, dict[str, float]] | None]:
    """Per request, ``{target: {label: probability}}`` (None for every request without a model)."""
    if model is None:
        return [None] * len(analysed)
    return model.label_probabilities(analysed)


def decisions(model: Any, analysed: Sequence[Analysed]) -> list[Decision]:
    """The combined (rules plus model) decision for each request."""
    return [decide(a, p) for a, p in zip(analysed, model_probas(model, analysed))]


def evaluation_frame(ev: dict[str, Any]) -> pd.DataFrame:
    """``training.evaluate`` figures as a table: one row per field, one column per mode."""
    modes = [m for m in ("rules", "model", "combined") if m in ev]
    out = {}
    for m in modes:
        e = ev[m]
        if "clause_accuracy" in e:
            out[m] = {"category macro-F1": e["category"]["macro_f1"], "category accuracy": e["category"]["accuracy"],
                      **{name: e[key] for name, key in FIELD_FIGURES[2:]}}
        else:
            out[m] = {"category macro-F1": e["macro_f1"], "category accuracy": e["accuracy"]}
    return pd.DataFrame(out)


#: (row name, key in the figures of ``training.field_scores``) in table order.
FIELD_FIGURES = (("category macro-F1", None), ("category accuracy", None),
                 ("scope accuracy", "scope_accuracy"), ("clause accuracy", "clause_accuracy"),
                 ("severity accuracy", "severity_accuracy"), ("missing_info micro-F1", "missing_info_micro_f1"),
                 ("delay_reasons micro-F1", "delay_reasons_micro_f1"), ("flags micro-F1", "flags_micro_f1"))


def _list_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ";".join(map(str, value))
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


# ---- review queue ------------------------------------------------------------------------
#: score = CONFIDENCE_WEIGHT * (1 - confidence) + DISAGREEMENT_WEIGHT * disagreement
#:         + RARITY_WEIGHT * rarity
CONFIDENCE_WEIGHT, DISAGREEMENT_WEIGHT, RARITY_WEIGHT = 1.0, 0.5, 0.3
#: Columns of data/tickets.jsonl: request fields, then the gold labels an analyst fills in.
REQUEST_COLUMNS = ("id", "subject", "text", "channel", "attachments", "product")
GOLD_COLUMNS = ("category", "scope", "clause", "severity", "missing_info", "delay_reasons", "flags", "split")
SUGGESTED = ("category", "scope", "clause", "severity", "missing_info", "delay_reasons", "flags")
REVIEW_COLUMNS = (("rank", "score", "reason") + REQUEST_COLUMNS + GOLD_COLUMNS
                  + tuple(f"suggested_{f}" for f in SUGGESTED) + ("confidence", "needs_review"))


def default_split(request_id: str) -> str:
    """The fixed 80/20 split ``intake train`` gives rows without one (``training.split_frames``)."""
    return "test" if int(hashlib.sha1(request_id.encode()).hexdigest(), 16) % 5 == 0 else "train"


def review_queue(df: pd.DataFrame, classifier: Any, limit: int | None = None) -> pd.DataFrame:
    """Rank the requests of ``df`` by how much they need a human label.

    ``score = 1.0 * (1 - confidence) + 0.5 * disagreement + 0.3 * rarity`` where
    ``disagreement`` is 1 when the clause rules point to another category than the
    model (``needs_review`` for that reason), and ``rarity = 1 - n(c) / n(most
    common)`` for the predicted category ``c`` among the ranked requests (0 for the
    most common category). Ties keep input order. Gold columns are empty unless the
    input has them; ``split`` is pre-filled by :func:`default_split`. Rows that
    cannot be classified are left out (see ``.attrs["failed"]``).
    """
    df = df.reset_index(drop=True)
    ids = [str(v) if "id" in df.columns and str(v) not in ("", "nan", "None") else str(i + 1)
           for i, v in enumerate(df["id"] if "id" in df.columns else range(len(df)))]
    records = [{**r, "id": rid} for r, rid in zip(requests_of(df), ids)]
    results = list(classifier.classify_many(records))
    failed = [f"row {r.error['row']}: {r.error['message']}" for r in results if not r.ok]
    keep = [i for i, r in enumerate(results) if r.ok]
    counts = Counter(results[i].category for i in keep)
    top = max(counts.values()) if counts else 1
    rows = []
    for i in keep:
        r, src = results[i], df.iloc[i]
        reasons = r.explanation.get("review_reasons", [])
        disagreement = [x for x in reasons if x.startswith("rules point to")]
        rarity = 1 - counts[r.category] / top
        score = CONFIDENCE_WEIGHT * (1 - r.confidence) + DISAGREEMENT_WEIGHT * bool(disagreement) + RARITY_WEIGHT * rarity
        why = [f"confidence {r.confidence:.2f}"] + disagreement
        if rarity > 0:
            why.append(f"rare predicted category {r.category} ({counts[r.category]} of {len(keep)})")
        row = {"score": round(score, 4), "reason": "; ".join(why), "confidence": r.confidence,
               "needs_review": r.needs_review, "id": ids[i]}
        for col in REQUEST_COLUMNS[1:]:
            row[col] = _list_text(src[col]) if col in df.columns else ""
        for col in GOLD_COLUMNS:
            row[col] = _list_text(src[col]) if col in df.columns else ""
        if not row["split"]:
            row["split"] = default_split(ids[i])
        d = r.to_dict()
        for f in SUGGESTED:
            value = d["clauses"][0]["id"] if f == "clause" else d[f]
            row[f"suggested_{f}"] = _list_text(value)
        rows.append(row)
    out = pd.DataFrame(rows, columns=[c for c in REVIEW_COLUMNS if c != "rank"])
    out = out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    if limit is not None:
        out = out.head(limit)
    out.insert(0, "rank", range(1, len(out) + 1))
    out.attrs["failed"] = failed
    return out


# ---- comparing two models ------------------------------------------------------------------
@dataclass
class Comparison:
    """Two models on the same requests: figures side by side and the labels that changed."""

    figures: pd.DataFrame  # index: field; columns: old, new, delta
    changes: pd.DataFrame  # columns: id, field, old, new, gold
    rows: int


def _category_only(df: pd.DataFrame, label_col: str | None, *kinds: str) -> bool:
    return label_col is not None or "own_taxonomy" in kinds or not {"clause", "severity"} <= set(df.columns)


def compare_models(data: str | Path, old: tuple[Any, dict[str, Any]], new: tuple[Any, dict[str, Any]], *,
                   split: str = "test", text_col: str = "text", label_col: str | None = None,
                   rules_dir: str | Path | None = None) -> Comparison:
    """Evaluate ``old`` and ``new`` (each ``(model, manifest)`` from ``load_model``) on one
    split of labelled data with the combined classifier; list every changed label."""
    from .dataset import read_labelled
    from .training import category_scores, field_scores

    kinds = [old[1].get("kind", "spec"), new[1].get("kind", "spec")]
    if kinds[0] != kinds[1]:
        raise ModelError(Errors.E062.format(old=kinds[0], new=kinds[1]))
    df = read_labelled(data, text_col=text_col, label_col=label_col)
    if "split" in df.columns and split != "all":
        df = df[df["split"] == split]
    if df.empty:
        raise InputError(Errors.E024.format(path=data, split=split))
    df = df.reset_index(drop=True)
    analysed = analyse_frame(df, rules_dir)
    ids = _ids(df, analysed)
    figures: dict[str, dict[str, float]] = {}
    predicted: dict[str, list[dict[str, str]]] = {}
    if _category_only(df, label_col, *kinds):
        fields = ("category",)
        for name, (model, _) in (("old", old), ("new", new)):
            pred = [str(p) for p in model.predict(analysed)]
            s = category_scores(df["category"].astype(str), pred)
            figures[name] = {"category macro-F1": s["macro_f1"], "category accuracy": s["accuracy"]}
            predicted[name] = [{"category": p} for p in pred]
    else:
        fields = SUGGESTED
        for name, (model, _) in (("old", old), ("new", new)):
            ds = decisions(model, analysed)
            s = field_scores(df, ds)
            figures[name] = {"category macro-F1": s["category"]["macro_f1"],
                             "category accuracy": s["category"]["accuracy"],
                             **{row: s[key] for row, key in FIELD_FIGURES[2:]}}
            predicted[name] = [{f: _list_text(getattr(d, f)) for f in fields} for d in ds]
    table = pd.DataFrame(figures)
    table["delta"] = (table["new"] - table["old"]).round(4)
    table.index.name = "field"
    changes = []
    gold_rows = df.to_dict("records")
    for i, rid in enumerate(ids):
        for f in fields:
            a, b = predicted["old"][i][f], predicted["new"][i][f]
            if a != b:
                changes.append({"id": rid, "field": f, "old": a, "new": b, "gold": _list_text(gold_rows[i].get(f))})
    return Comparison(table, pd.DataFrame(changes, columns=["id", "field", "old", "new", "gold"]), len(df))


# ---- worst errors --------------------------------------------------------------------------
def worst_errors(df: pd.DataFrame, model: Any, rules_dir: str | Path | None = None, n: int = 10) -> pd.DataFrame:
    """Requests whose combined category is wrong, lowest confidence first, with the
    rules that fired and the model's top categories (the result's explanation)."""
    df = df.reset_index(drop=True)
    analysed = analyse_frame(df, rules_dir)
    ids = _ids(df, analysed)
    rows = []
    for rid, d, gold in zip(ids, decisions(model, analysed), df["category"].astype(str)):
        if d.category == gold:
            continue
        top = d.explanation["model"].get("category", [])
        rows.append({"id": rid, "gold": gold, "predicted": d.category, "clause": d.clause,
                     "confidence": d.confidence,
                     "rules fired": ", ".join(f"{r['id']} ({'/'.join(r['matched'][:2])})"
                                              for r in d.explanation["rules"] if r["kind"] == "clause") or "-",
                     "model": ", ".join(f"{m['label']} {m['probability']:.2f}" for m in top) or "-",
                     "review": "; ".join(d.review_reasons)})
    out = pd.DataFrame(rows, columns=["id", "gold", "predicted", "clause", "confidence", "rules fired", "model", "review"])
    return out.sort_values("confidence", kind="stable").head(n).reset_index(drop=True)
