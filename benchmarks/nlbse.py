"""NLBSE'24 issue report classification with the project's own retraining path.

    python benchmarks/nlbse.py [--external ../shared/external] [--params '{"C": 4}'] [--tune]

Protocol (../shared/external/README.md): one classifier per repository (react,
tensorflow, vscode, bitcoin, opencv), trained on that repository's 300 training
issues and scored by macro F1 on its 300 test issues; the score is the mean over
the five. Our classifier is trained with ``classifier.training.train`` (what
``intake train --text-col issue --label-col label`` runs) on a CSV written to a
temporary folder, with title + body as the text and a train/test ``split`` column.
Beside it, a plain TF-IDF + LogisticRegression baseline (scikit-learn only).

``--tune`` chooses model options by 5-fold cross-validation on the TRAINING
issues only (the test issues are never read while tuning) and prints the ranking;
NLBSE_PARAMS below is its result. The external files are read in place, never
copied into the project.
"""
from __future__ import annotations

import os

os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXTERNAL = REPO_ROOT.parent / "shared" / "external"
REPOS = ("facebook/react", "tensorflow/tensorflow", "microsoft/vscode", "bitcoin/bitcoin", "opencv/opencv")
#: Model options for this benchmark, chosen by ``--tune`` (5-fold CV on the training
#: issues of all five repositories, mean macro F1; the test issues are never read);
#: the project defaults are left as they are. With TUNE_GRID below the CV ranking put
#: C=64 first (0.776), C=16 second (0.773), C=4 third (0.763); word bigrams beat
#: unigrams and char n-grams did not help. An earlier grid (C 1/4/16 x char_ngrams
#: None/(2,5) x min_df 1/2) also ranked the highest C, no char n-grams, min_df=2 first.
#: On the test issues the CV-chosen C=64 scores the same as the defaults (0.768 both).
NLBSE_PARAMS: dict[str, Any] = {"C": 64.0}
#: The grid ``--tune`` searches (every combination), on top of training.DEFAULT_PARAMS.
TUNE_GRID: dict[str, list[Any]] = {"C": [4.0, 16.0, 64.0], "char_ngrams": [None, (2, 5)], "ngram_max": [1, 2]}


def issue_text(df: pd.DataFrame) -> pd.Series:
    """Title and body as one request text."""
    return (df["title"].fillna("").astype(str) + "\n\n" + df["body"].fillna("").astype(str)).str.strip()


def read_external(external: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The competition's train and test issues, read in place."""
    train = pd.read_csv(external / "nlbse24_train.csv", dtype=str, keep_default_na=False)
    test = pd.read_csv(external / "nlbse24_test.csv", dtype=str, keep_default_na=False)
    return train, test


def write_repo_csv(train: pd.DataFrame, test: pd.DataFrame, path: Path) -> Path:
    """One repository's issues as an analyst's CSV: columns id, issue, label, split."""
    frame = pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True)
    out = pd.DataFrame({"id": [f"{s}-{i}" for i, s in enumerate(frame["split"])], "issue": issue_text(frame),
                        "label": frame["label"], "split": frame["split"]})
    out.to_csv(path, index=False)
    return path


def ours(train: pd.DataFrame, test: pd.DataFrame, workdir: Path, slug: str,
         params: dict[str, Any]) -> tuple[float, float]:
    """(macro F1 on the test issues, seconds) through classifier.training.train."""
    from classifier import training

    csv = write_repo_csv(train, test, workdir / f"{slug}.csv")
    start = time.perf_counter()
    manifest = training.train(csv, workdir / slug, text_col="issue", label_col="label", params=params)
    seconds = time.perf_counter() - start
    return float(manifest["evaluation"]["model"]["macro_f1"]), seconds


def tfidf_lr(train: pd.DataFrame, test: pd.DataFrame) -> tuple[float, float]:
    """(macro F1, seconds) of plain TF-IDF + LogisticRegression on title + body."""
    start = time.perf_counter()
    vec = TfidfVectorizer()
    clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(issue_text(train)), train["label"])
    seconds = time.perf_counter() - start
    pred = clf.predict(vec.transform(issue_text(test)))
    return float(f1_score(test["label"], pred, average="macro")), seconds


def tune(train_all: pd.DataFrame, folds: int = 5) -> list[tuple[float, dict[str, Any]]]:
    """Mean CV macro F1 over the five repositories' TRAINING issues for every grid point."""
    from classifier.model import RequestModel, analyse_inputs
    from classifier.training import DEFAULT_PARAMS

    grid = [dict(zip(TUNE_GRID, values)) for values in itertools.product(*TUNE_GRID.values())]
    scores = np.zeros((len(grid), len(REPOS)))
    for r, repo in enumerate(REPOS):
        df = train_all[train_all["repo"] == repo].reset_index(drop=True)
        analysed = analyse_inputs([{"text": t or " ", "id": str(i)} for i, t in enumerate(issue_text(df))])
        y = df["label"].to_numpy()
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
        splits = list(skf.split(np.zeros(len(y)), y))
        for g, cand in enumerate(grid):
            f1s = []
            for tr, te in splits:
                model = RequestModel(**{**DEFAULT_PARAMS, **cand}).fit([analysed[i] for i in tr], y[tr])
                f1s.append(f1_score(y[te], model.predict([analysed[i] for i in te]), average="macro"))
            scores[g, r] = np.mean(f1s)
        print(f"tuned on {repo} training issues", flush=True)
    ranked = sorted(zip(scores.mean(axis=1), grid), key=lambda t: -t[0])
    for score, cand in ranked:
        print(f"cv mean macro-F1 {score:.3f}  {cand}")
    return ranked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--external", type=Path, default=DEFAULT_EXTERNAL,
                    help="Folder holding nlbse24_train.csv and nlbse24_test.csv (default: ../shared/external).")
    ap.add_argument("--params", default=None,
                    help="JSON model params for our classifier (default: NLBSE_PARAMS; '{}' for the project defaults).")
    ap.add_argument("--tune", action="store_true", help="Cross-validate TUNE_GRID on the training issues first.")
    args = ap.parse_args()
    train_all, test_all = read_external(args.external)
    params = dict(NLBSE_PARAMS) if args.params is None else json.loads(args.params)
    if args.tune:
        params = dict(tune(train_all)[0][1])
    if isinstance(params.get("char_ngrams"), list):
        params["char_ngrams"] = tuple(params["char_ngrams"])
    print(f"our model params (on top of training.DEFAULT_PARAMS): {params}")
    ours_f1, base_f1 = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repo in REPOS:
            tr, te = train_all[train_all["repo"] == repo], test_all[test_all["repo"] == repo]
            slug = repo.split("/")[1]
            f1, secs = ours(tr, te, Path(tmp), slug, params)
            bf1, bsecs = tfidf_lr(tr, te)
            ours_f1.append(f1)
            base_f1.append(bf1)
            print(f"{repo:24s} train {len(tr)} test {len(te)}: macro-F1 {f1:.3f} "
                  f"(train+evaluate {secs:.1f} s, incl. spaCy analysis) | tfidf-lr {bf1:.3f} (fit {bsecs:.2f} s)",
                  flush=True)
    print("published: fine-tuned GPT-4o 0.807 mean macro-F1 (arXiv 2506.00128)")
    print(f"nlbse24 mean macro-F1: {np.mean(ours_f1):.3f} (tfidf-lr baseline: {np.mean(base_f1):.3f})")


if __name__ == "__main__":
    main()
