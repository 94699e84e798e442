"""Choose the rules-plus-model policy weights by 5-fold cross-validation on the
train split only (the test split is never read here).

    python benchmarks/tune_policy.py [--data data/tickets.jsonl] [--judge-on p7-,p8-,p9-,p10-,p11-]

The model's out-of-fold probabilities come from all train rows. The weights are
judged only on the train rows whose ids start with --judge-on: the second and third
writing waves (data/DATASHEET.md), which the rule authors never saw. On rows the rules were
written against, rules look better than they are; judging there would overweight them.
Prints the grid's best weights; classifier/decide.py's Policy defaults come from here.
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np
from sklearn.model_selection import StratifiedKFold

from classifier.dataset import read_labelled
from classifier.decide import Policy, decide
from classifier.model import RequestModel, analyse_inputs
from classifier.training import DEFAULT_PARAMS, SPEC_TARGETS, _requests, category_scores


def out_of_fold_probas(df, analysed, folds=5):
    probas = [None] * len(df)
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    for tr, te in skf.split(np.zeros(len(df)), df["clause"]):
        model = RequestModel(**DEFAULT_PARAMS).fit([analysed[i] for i in tr], df.iloc[tr][list(SPEC_TARGETS)])
        raw = model.predict_proba([analysed[i] for i in te])
        for j, i in enumerate(te):
            probas[i] = {n: dict(zip(c.tolist(), p[j].tolist())) for n, c, p in zip(SPEC_TARGETS, model.classes_, raw)}
    return probas


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/tickets.jsonl")
    ap.add_argument("--judge-on", default="p7-,p8-,p9-,p10-,p11-", help="id prefixes of the rows the weights are judged on ('' = all)")
    args = ap.parse_args()
    df = read_labelled(args.data)
    df = df[df["split"] == "train"].reset_index(drop=True)
    analysed = analyse_inputs(_requests(df))
    probas = out_of_fold_probas(df, analysed)
    prefixes = tuple(p for p in args.judge_on.split(",") if p)
    keep = [i for i, rid in enumerate(df["id"].astype(str)) if not prefixes or rid.startswith(prefixes)]
    df = df.iloc[keep].reset_index(drop=True)
    analysed = [analysed[i] for i in keep]
    probas = [probas[i] for i in keep]
    print(f"judging on {len(df)} train rows")
    best = None
    for rw, cw in itertools.product([0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8], [0.0, 0.25, 0.5, 0.75]):
        pol = Policy(rule_weight=rw, category_weight=cw)
        ds = [decide(a, p, "combined", pol) for a, p in zip(analysed, probas)]
        f1 = category_scores(df["category"], [d.category for d in ds])["macro_f1"]
        acc = float(np.mean([d.clause == g for d, g in zip(ds, df["clause"])]))
        print(f"rule_weight {rw:.2f} category_weight {cw:.2f}: category macro-F1 {f1:.3f} clause acc {acc:.3f}")
        if best is None or f1 + acc > best[0]:
            best = (f1 + acc, rw, cw)
    print(f"best clause policy: rule_weight={best[1]} category_weight={best[2]}")
    best_sev = None
    for sw in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]:
        pol = Policy(rule_weight=best[1], category_weight=best[2], severity_rule_weight=sw)
        ds = [decide(a, p, "combined", pol) for a, p in zip(analysed, probas)]
        acc = float(np.mean([d.severity == g for d, g in zip(ds, df["severity"])]))
        print(f"severity_rule_weight {sw:.1f}: severity acc {acc:.3f}")
        if best_sev is None or acc > best_sev[0] + 1e-9:
            best_sev = (acc, sw)
    print(f"best severity policy: severity_rule_weight={best_sev[1]}")


if __name__ == "__main__":
    main()
