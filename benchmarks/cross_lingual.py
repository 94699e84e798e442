"""How much the shared concepts carry from one language to another.

    python benchmarks/cross_lingual.py [--data data/tickets.jsonl]

For each language with labelled rows: a model trained on the train split of every
*other* language, evaluated (combined, as shipped) on that language's test rows, beside
the model trained on all languages' train rows. With the language's own rows held out,
what it still gets right comes from the rules and from the concepts its words share
with the others' (`concept=INSTALL` is one feature whatever language said it), since
its own words were never seen. The test split is only scored, never fitted.
"""
from __future__ import annotations

import argparse

from classifier.dataset import read_labelled
from classifier.model import RequestModel, analyse_inputs
from classifier.training import DEFAULT_PARAMS, SPEC_TARGETS, _requests, evaluate_frames, gold_languages, split_frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/tickets.jsonl")
    args = ap.parse_args()
    df = read_labelled(args.data)
    train_df, test_df = (f.reset_index(drop=True) for f in split_frames(df, args.data))
    train_lang, test_lang = gold_languages(train_df), gold_languages(test_df)
    x_train = analyse_inputs(_requests(train_df))
    x_test = analyse_inputs(_requests(test_df, given_language=False))
    targets = list(SPEC_TARGETS)
    everyone = RequestModel(**DEFAULT_PARAMS).fit(x_train, train_df[targets].astype(str))
    print("| held out | test rows | model trained on | category macro-F1 | clause accuracy | severity accuracy |")
    print("|---|---:|---|---:|---:|---:|")
    for lang in sorted(set(test_lang), key=lambda c: (c != "en", c)):
        keep = [i for i, c in enumerate(train_lang) if c != lang]
        others = RequestModel(**DEFAULT_PARAMS).fit([x_train[i] for i in keep],
                                                    train_df.iloc[keep][targets].astype(str))
        at = [i for i, c in enumerate(test_lang) if c == lang]
        part, analysed = test_df.iloc[at].reset_index(drop=True), [x_test[i] for i in at]
        for name, model in ((f"all but {lang} ({len(keep)} rows)", others),
                            (f"all ({len(x_train)} rows)", everyone)):
            c = evaluate_frames(part, analysed, model)["combined"]
            print(f"| {lang} | {len(at)} | {name} | {c['category']['macro_f1']:.3f} | {c['clause_accuracy']:.3f} "
                  f"| {c['severity_accuracy']:.3f} |")


if __name__ == "__main__":
    main()
