"""Choose RequestModel's parameters by 5-fold cross-validation on the train split
only (the test split is never read here).

    python benchmarks/tune_model.py [--data data/tickets.jsonl]

Scores each setting by the mean of the three things the model predicts —
category macro-F1, clause accuracy and severity accuracy — of the model alone
(out-of-fold), and prints the best; training.DEFAULT_PARAMS comes from here.
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from classifier.dataset import read_labelled
from classifier.model import RequestModel, analyse_inputs
from classifier.training import DEFAULT_PARAMS, SPEC_TARGETS, _requests

GRID = {
    "C": [2.0, 8.0, 32.0],
    "ngram_max": [1, 2],
    "char_ngrams": [None, (2, 5)],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/tickets.jsonl")
    args = ap.parse_args()
    df = read_labelled(args.data)
    df = df[df["split"] == "train"].reset_index(drop=True)
    analysed = analyse_inputs(_requests(df))
    Y = df[list(SPEC_TARGETS)].astype(str)
    folds = list(StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(np.zeros(len(df)), df["clause"]))
    results = []
    for values in itertools.product(*GRID.values()):
        params = {**DEFAULT_PARAMS, **dict(zip(GRID, values))}
        start = time.perf_counter()
        pred = np.empty((len(df), 3), dtype=object)
        for tr, te in folds:
            model = RequestModel(**params).fit([analysed[i] for i in tr], Y.iloc[tr])
            pred[te] = model.predict([analysed[i] for i in te])
        f1 = f1_score(Y["category"], pred[:, 0], average="macro")
        clause = float(np.mean(Y["clause"].to_numpy() == pred[:, 1]))
        severity = float(np.mean(Y["severity"].to_numpy() == pred[:, 2]))
        results.append(((f1 + clause + severity) / 3, params))
        print(f"{dict(zip(GRID, values))}: category macro-F1 {f1:.3f} clause acc {clause:.3f} "
              f"severity acc {severity:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    best = max(results, key=lambda r: r[0])
    print("best:", {k: best[1][k] for k in GRID})


if __name__ == "__main__":
    main()
