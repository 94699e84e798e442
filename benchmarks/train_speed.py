"""How long training takes on 10,000 requests, on one core.

    python benchmarks/train_speed.py [--n 10000] [--data data/tickets.jsonl]

Fits RequestModel with training.DEFAULT_PARAMS on three outputs (category, clause,
severity) from raw requests, which includes reading every request with the spaCy
pipeline and the rule matcher. The baseline, measured in the same run on the same
texts, is a plain scikit-learn TF-IDF + LogisticRegression fit on the same three
outputs; the figure to watch is the ratio.

The 10,000 requests are built from the labelled rows of data/tickets.jsonl: every
row is used in turn, the first copy as written and later copies with the sentences
of their text (and of their subject, when it has several) shuffled by a seeded
random generator, so the texts differ while the labels stay true.
"""
from __future__ import annotations

import os

os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
if hasattr(os, "sched_setaffinity"):  # and the process itself on one CPU
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from classifier.dataset import read_labelled  # noqa: E402
from classifier.model import RequestModel, analyse_inputs  # noqa: E402
from classifier.training import DEFAULT_PARAMS, SPEC_TARGETS, _requests  # noqa: E402

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
DEFAULT_DATA = Path(__file__).resolve().parent.parent / "data" / "tickets.jsonl"


def shuffle_sentences(text: str, rng: random.Random) -> str:
    parts = [p for p in SENTENCE_END.split(text) if p.strip()]
    rng.shuffle(parts)
    return " ".join(parts) if parts else text


def grow(df: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows: the labelled rows in turn, copies after the first with shuffled sentences."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = df.iloc[i % len(df)].to_dict()
        if i >= len(df):
            row["text"] = shuffle_sentences(row["text"], rng)
            if row.get("subject"):
                row["subject"] = shuffle_sentences(row["subject"], rng)
        rows.append(row)
    return pd.DataFrame(rows)


def baseline_fit(texts: list[str], Y: pd.DataFrame) -> float:
    """Seconds for plain TF-IDF + LogisticRegression, one per output."""
    start = time.perf_counter()
    X = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, max_features=20000).fit_transform(texts)
    for col in Y.columns:
        LogisticRegression(C=8.0, max_iter=3000, class_weight="balanced").fit(X, Y[col])
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    df = read_labelled(args.data)
    big = grow(df, args.n)
    reqs = _requests(big)
    Y = big[list(SPEC_TARGETS)].astype(str)
    texts = [(r.get("subject", "") + "\n" + r["text"]).strip() for r in reqs]
    print(f"{args.n} requests built from the {len(df)} labelled rows of {args.data.name}: each row in turn, "
          f"copies after the first with their sentences shuffled (seed 0); "
          f"threads pinned to 1, process on CPU {sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}")
    analyse_inputs(reqs[:5])  # build the spaCy pipeline once, outside the timings

    base = baseline_fit(texts, Y)
    print(f"baseline: TF-IDF + LogisticRegression, 3 outputs, same texts: {base:.1f} s")

    # RequestModel.fit on raw requests is analyse_inputs (spaCy pipeline + rule matcher)
    # followed by the fit on analysed records; the two halves are timed separately
    t0 = time.perf_counter()
    analysed = analyse_inputs(reqs)
    t1 = time.perf_counter()
    model = RequestModel(**DEFAULT_PARAMS).fit(analysed, Y)
    t2 = time.perf_counter()
    total = t2 - t0
    print(f"RequestModel (default params) from raw requests: {total:.1f} s = spaCy analysis {t1 - t0:.1f} s "
          f"+ vectorise and 3 logistic regressions {t2 - t1:.1f} s; {len(model.vectorizer_.vocabulary_)} "
          f"lemma/rule features, classes per output {[len(c) for c in model.classes_]}")
    print(f"train {args.n} requests: {total:.1f} s (one core), baseline {base:.1f} s, ratio {total / base:.1f}")


if __name__ == "__main__":
    main()
