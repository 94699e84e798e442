"""Out-of-fold figures on the train split: what a rule or policy change does, judged
without the test split.

    python benchmarks/out_of_fold.py [--data data/tickets.jsonl] [--folds 5]

The model is refitted on four fifths of the train rows and decides the fifth (the
folds of ``tune_policy.py``), with the language detected as ``intake evaluate`` does.
Prints ``intake evaluate``'s fields for all train rows, per language, and for the
real-shapes wave (ids ``w<n>-``). Run it before and after a change to compare.
"""
from __future__ import annotations

import argparse
import re

from tune_policy import out_of_fold_probas

from classifier.dataset import read_labelled
from classifier.decide import decide
from classifier.model import analyse_inputs
from classifier.training import _requests, field_scores, gold_languages

FIELDS = ("category macro-F1", "clause accuracy", "severity accuracy", "missing_info micro-F1", "flags micro-F1")


def _row(scores: dict) -> list[float]:
    return [scores["category"]["macro_f1"], scores["clause_accuracy"], scores["severity_accuracy"],
            scores["missing_info_micro_f1"], scores["flags_micro_f1"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/tickets.jsonl")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    df = read_labelled(args.data)
    df = df[df["split"] == "train"].reset_index(drop=True)
    analysed = analyse_inputs(_requests(df, given_language=False))
    decisions = [decide(a, p) for a, p in zip(analysed, out_of_fold_probas(df, analysed, args.folds))]
    languages = gold_languages(df)
    groups = {"all": list(range(len(df)))}
    for code in sorted(set(languages)):
        groups[code] = [i for i, lang in enumerate(languages) if lang == code]
    groups["wave"] = [i for i, rid in enumerate(df["id"].astype(str)) if re.match(r"w\d+-", rid)]
    print("| rows | " + " | ".join(FIELDS) + " |")
    print("|---|" + "---:|" * len(FIELDS))
    for name, rows in groups.items():
        if rows:
            scores = field_scores(df.iloc[rows].reset_index(drop=True), [decisions[i] for i in rows])
            print(f"| {name} ({len(rows)}) | " + " | ".join(f"{v:.3f}" for v in _row(scores)) + " |")


if __name__ == "__main__":
    main()
