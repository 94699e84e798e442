"""Rule matcher speed against spaCy's blank tokenizer, same texts, same run.

    python benchmarks/matcher_speed.py [--n 5000] [--repeat 5]

Texts: the requests of data/tickets.jsonl (subject + body), cycled to N with a
ticket number prefixed so no two are identical; normalised (HTML, quotes, secrets)
beforehand, since normalising is not matching. "matcher" is the whole rule
pipeline: tokenizer, lemmatizer and the rule matcher component. Runs on one core
(thread pools pinned to 1). After a warm-up, --repeat rounds each time the tokenizer and
then the matcher (so a change in the machine's speed during the run slows both alike);
the best run of each side counts. Docs are consumed as a pipeline consumes them, not
kept (a list of thousands of docs makes the garbage collector's work, not the sides',
set the ratio).
Ends with: matcher: X req/s, tokenizer: Y req/s, ratio R
"""
from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterable  # noqa: E402

import spacy  # noqa: E402

from classifier.matching import analyse_docs, build_pipeline  # noqa: E402
from classifier.normalise import normalise  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def load_texts(n: int) -> list[str]:
    rows = [json.loads(line) for line in open(ROOT / "data" / "tickets.jsonl", encoding="utf-8")]
    base = [(r.get("subject") or "", r["text"]) for r in rows]
    return [f"Ticket {i}: {base[i % len(base)][1]}" for i in range(n)], [base[i % len(base)][0] for i in range(n)]


def cpu_seconds(docs: Iterable) -> float:
    """CPU time to produce every doc of ``docs``, each dropped once made."""
    start = time.process_time()
    deque(docs, maxlen=0)
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5, help="rounds, each timing both sides (default 5)")
    args = ap.parse_args()
    texts, subjects = load_texts(args.n)
    normalised = [normalise(t, s) for t, s in zip(texts, subjects)]
    plain = [n.text for n in normalised]
    tokenizer = spacy.blank("en").tokenizer
    nlp = build_pipeline()
    # warm-up: fill caches on both sides
    list(tokenizer.pipe(plain[:500]))
    list(analyse_docs(nlp, normalised[:500]))
    t_tok = t_match = float("inf")
    for _ in range(args.repeat):
        t_tok = min(t_tok, cpu_seconds(tokenizer.pipe(plain)))
        t_match = min(t_match, cpu_seconds(analyse_docs(nlp, normalised)))
    matcher = nlp.get_pipe("intake_rule_matcher")
    print(f"{len(matcher.ruleset.rules)} rules over {len(matcher.ruleset.concepts)} concepts: PhraseMatcher on "
          f"LEMMA and LOWER, {len(matcher._regexes.keys)} regexes behind one Hyperscan prefilter")
    print(f"requests: {args.n}, mean length {sum(map(len, plain)) / len(plain):.0f} characters")
    rm, rt = args.n / t_match, args.n / t_tok
    print(f"matcher: {rm:.0f} req/s, tokenizer: {rt:.0f} req/s, ratio {t_match / t_tok:.2f}")


if __name__ == "__main__":
    main()
