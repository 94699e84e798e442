"""End-to-end throughput of ``Classifier.classify_many`` beside spaCy's blank
tokenizer alone on the same texts, in the same run, on one core, per language.

    python benchmarks/throughput.py [--n 5000] [--latency 500] [--repeat 5] [--data data/tickets.jsonl]

Requests cycle the texts of the labelled corpus with distinct ids, one language at a
time (the rows of each ``language`` label; rows without one are the English corpus),
without their ``language`` field: detection is part of what is timed. Both sides are
warmed up first, then timed in --repeat rounds; each round times every language in
turn, its tokenizer then its classifier (so a change in the machine's speed slows both
alike, and a spell of load costs each language one round); the best run of each
counts. Also prints single-request latency percentiles over ``--latency`` ``classify()``
calls and a per-stage breakdown (normalise+mask, pipeline matching, model, decide,
reply), and ends with the line

    classify_many: X req/s, tokenizer: Y req/s, ratio R, p50 A ms, p99 B ms

Targets (reported, not asserted): >= 2,000 req/s and ratio <= 10 on the English corpus;
>= 1,500 req/s in every language.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: set before numpy is imported

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import spacy  # noqa: E402

from classifier.classify import Classifier  # noqa: E402
from classifier.collector import collector_paused  # noqa: E402
from classifier.decide import decide  # noqa: E402
from classifier.normalise import normalise  # noqa: E402
from classifier.request import Request  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_RPS = 2_000
TARGET_RPS_PER_LANGUAGE = 1_500
TARGET_RATIO = 10.0


def load_requests(path: Path, n: int, language: str = "en") -> list[dict]:
    """``n`` requests cycling the corpus texts of one language (with subject and fields), distinct ids."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if (r.get("language") or "en") == language]
    if not rows:  # a language with a pack but no labelled requests yet
        return []
    out = []
    for i in range(n):
        src = rows[i % len(rows)]
        record = {"id": f"bench-{i:06d}", "text": src["text"]}
        for key in ("subject", "channel", "attachments", "product"):
            if key in src:
                record[key] = src[key]
        out.append(record)
    return out


def pin_one_core() -> None:
    """Run on one CPU when the OS allows it (the thread variables cover BLAS)."""
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def rates(clf: Classifier, by_language: dict[str, list[dict]], repeat: int) -> dict[str, tuple[float, float]]:
    """Per language, requests a second of spaCy's blank tokenizer (the language's) and of
    ``classify_many``: the best of ``repeat`` runs each (the machine's other load only ever
    slows a run down). Each round times every language in turn, its tokenizer then its
    classifier, so a spell of load on a shared machine costs each language one round of
    its ``repeat``, not all of them."""
    tokenizers = {lang: spacy.blank(clf.analyser.ruleset.languages[lang].tokenizer) for lang in by_language}
    for lang, requests in by_language.items():  # warm up both
        for r in requests[:300]:
            tokenizers[lang].make_doc(r["text"])
        for _ in clf.classify_many(requests[:300]):
            pass
    best = {lang: [float("inf"), float("inf")] for lang in by_language}
    for _ in range(repeat):
        for lang, requests in by_language.items():
            texts = [r["text"] for r in requests]
            nlp = tokenizers[lang]
            start = time.perf_counter()
            for t in texts:
                nlp.make_doc(t)
            best[lang][0] = min(best[lang][0], time.perf_counter() - start)
            start = time.perf_counter()
            count = sum(1 for _ in clf.classify_many(requests))
            best[lang][1] = min(best[lang][1], time.perf_counter() - start)
            assert count == len(requests)
    return {lang: (rate(len(by_language[lang]), tok), rate(len(by_language[lang]), many))
            for lang, (tok, many) in best.items()}


def latency_ms(clf: Classifier, requests: list[dict], calls: int) -> tuple[float, float]:
    for r in requests[:20]:
        clf.classify(r)
    times = []
    for r in (requests * (calls // max(len(requests), 1) + 1))[:calls]:
        start = time.perf_counter()
        clf.classify(r)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def stage_breakdown(clf: Classifier, requests: list[dict]) -> dict[str, float]:
    """Seconds per stage over ``requests``, each stage timed on its own over the whole batch,
    with garbage collection paused as ``classify_many`` pauses it per batch."""
    with collector_paused():
        _stage_seconds(clf, requests[:200])  # each stage's first call sets up what it keeps
        return _stage_seconds(clf, requests)


def _stage_seconds(clf: Classifier, requests: list[dict]) -> dict[str, float]:
    from classifier.features import Analysed, _model_tokens
    from classifier.matching import analyse_docs
    from classifier.reply import write_reply

    reqs = [Request.from_mapping(r) for r in requests]
    out: dict[str, float] = {}

    start = time.perf_counter()
    norms = [normalise(r.text, r.subject) for r in reqs]
    out["normalise+mask"] = time.perf_counter() - start

    start = time.perf_counter()
    for norm in norms:
        clf.analyser.detector.language_of(norm)
    out["detect language"] = time.perf_counter() - start

    nlp = clf.analyser.nlp
    start = time.perf_counter()
    docs = list(analyse_docs(nlp, norms))
    out["pipeline matching (tokenizer+lemmas+rules)"] = time.perf_counter() - start

    start = time.perf_counter()
    for norm in norms:
        nlp.make_doc(norm.text)
    out["  of which the tokenizer"] = time.perf_counter() - start

    start = time.perf_counter()
    analysed = []
    for req, norm, doc in zip(reqs, norms, docs):  # what Analyser.analyse does after the pipeline
        analysed.append(Analysed(req, norm, list(doc._.intake_hits), _model_tokens(doc, norm)))
    out["model features (lemmas of kept segments)"] = time.perf_counter() - start

    start = time.perf_counter()
    probas = []
    for i in range(0, len(analysed), 256):
        probas += clf._probas(analysed[i:i + 256])
    out["model (predict_proba)"] = time.perf_counter() - start

    start = time.perf_counter()
    decisions = [decide(a, p) for a, p in zip(analysed, probas)]
    out["decide"] = time.perf_counter() - start

    start = time.perf_counter()
    for d in decisions:
        write_reply(d, clf.templates, clf.clause_texts)
    out["reply"] = time.perf_counter() - start

    start = time.perf_counter()
    for a, d in zip(analysed, decisions):
        clf._result(a, d).to_dict()
    out["result (reply + Result + to_dict)"] = time.perf_counter() - start
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5_000, help="requests for classify_many (default 5000)")
    ap.add_argument("--latency", type=int, default=500, help="classify() calls for latency (default 500)")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "tickets.jsonl")
    ap.add_argument("--repeat", type=int, default=5, help="rounds, each timing both sides; the best of each counts (default 5)")
    args = ap.parse_args()

    pin_one_core()
    start = time.perf_counter()
    clf = Classifier.load()
    print(f"load: {time.perf_counter() - start:.2f} s")
    by_language = {}
    for language in clf.analyser.ruleset.languages:
        reqs = load_requests(args.data, args.n, language)
        if reqs:  # a language with a pack but no labelled requests yet has nothing to time
            by_language[language] = reqs
    measured = rates(clf, by_language, args.repeat)
    per_language = {}
    for language, (lang_tok, lang_many) in measured.items():
        reqs = by_language[language]
        per_language[language] = lang_many
        mean = sum(len(r["text"]) for r in reqs) / len(reqs)
        print(f"{language}: classify_many {lang_many:.0f} req/s, tokenizer {lang_tok:.0f} req/s, "
              f"ratio {lang_tok / lang_many:.1f} ({len(reqs)} requests, {mean:.0f} characters on average)")
    requests = by_language["en"]
    tok, many = measured["en"]
    breakdown = stage_breakdown(clf, requests[:2_000])
    p50, p99 = latency_ms(clf, requests, args.latency)

    total = sum(v for k, v in breakdown.items() if not k.startswith(" ") and not k.startswith("result"))
    print(f"per-stage breakdown over {min(2_000, len(requests))} requests (ms per request, share of the stages):")
    n = min(2_000, len(requests))
    for name, seconds in breakdown.items():
        share = "" if name.startswith(" ") or name.startswith("result") else f"  {seconds / total:6.1%}"
        print(f"  {name:<45} {seconds / n * 1000:7.3f} ms{share}")
    print(f"targets: >= {TARGET_RPS} req/s ({'met' if many >= TARGET_RPS else 'NOT met'}), "
          f"ratio <= {TARGET_RATIO:g} ({'met' if tok / many <= TARGET_RATIO else 'NOT met'})")
    print("per language: " + ", ".join(f"{k} {v:.0f} req/s" for k, v in per_language.items())
          + f" (target >= {TARGET_RPS_PER_LANGUAGE} each: "
          + ("met" if min(per_language.values()) >= TARGET_RPS_PER_LANGUAGE else "NOT met") + ")")
    print(f"classify_many: {many:.0f} req/s, tokenizer: {tok:.0f} req/s, ratio {tok / many:.1f}, "
          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    main()
