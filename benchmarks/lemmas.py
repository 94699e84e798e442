"""Which lemma source reads Polish best without a tagger (issue: Polish lemmas).

    python benchmarks/lemmas.py [--data data/tickets.jsonl]

spaCy's Polish lookup tables (``spacy-lookups-data``) are split by part of speech, as
its lemmatizer picks a table from the tag a trained tagger gives; a blank pipeline has
no tagger. Without one, the candidates are: simplemma's Polish dictionary (what the
``pl`` pack uses), spaCy's tables tried in a fixed order (noun, verb, adjective, the
rest; the first that knows the form), and each followed by the other. For each, the
script prints the accuracy on ``benchmarks/lemma_gold_pl.tsv`` (inflected words of
support requests with the lemma a reader expects), the share of the Polish requests'
words it knows (``language: pl`` rows), and the time and memory to load it.
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import time
from pathlib import Path
from typing import Callable

import simplemma
import srsly
import spacy_lookups_data

ROOT = Path(__file__).resolve().parent.parent
GOLD = Path(__file__).with_name("lemma_gold_pl.tsv")
POS_ORDER = ("noun", "verb", "adj", "adv", "adp", "aux", "num", "part", "pron")

Lemmatize = Callable[[str], "str | None"]  # a lower-case form -> its lemma, or None if unknown


def simplemma_pl() -> Lemmatize:
    simplemma.lemmatize("test", lang="pl")  # loads the dictionary

    def lemma(form: str) -> str | None:
        return simplemma.lemmatize(form, lang="pl").lower() if simplemma.is_known(form, lang="pl") else None
    return lemma


def spacy_tables_pl() -> Lemmatize:
    folder = Path(spacy_lookups_data.__file__).parent / "data"
    tables = [srsly.read_gzip_json(folder / f"pl_lemma_lookup_{pos}.json.gz") for pos in POS_ORDER]

    def lemma(form: str) -> str | None:
        return next((t[form].lower() for t in tables if form in t), None)
    return lemma


def chained(*sources: Lemmatize) -> Lemmatize:
    def lemma(form: str) -> str | None:
        return next((found for s in sources if (found := s(form)) is not None), None)
    return lemma


def polish_words(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not any(r.get("language") == "pl" for r in rows):  # not merged yet: the written parts
        rows = [json.loads(line) for f in sorted((ROOT / "data" / "parts").glob("pl*.jsonl"))
                for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    text = " ".join((r.get("subject") or "") + " " + r["text"] for r in rows if r.get("language") == "pl")
    return [w.lower() for w in re.findall(r"[^\W\d_]+", text)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "tickets.jsonl")
    args = ap.parse_args()
    gold = [line.split("\t") for line in GOLD.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]
    words = polish_words(args.data)
    print(f"{len(gold)} gold forms; {len(words)} words of Polish requests")
    loaded: dict[str, Lemmatize] = {}
    for name, make in (("simplemma:pl", simplemma_pl), ("spaCy tables (noun, verb, adj, …)", spacy_tables_pl)):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        loaded[name] = make()
        print(f"{name}: loads in {time.perf_counter() - start:.1f} s, "
              f"+{(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024:.0f} MB")
    a, b = loaded
    loaded[f"{a}, then {b}"] = chained(loaded[a], loaded[b])
    loaded[f"{b}, then {a}"] = chained(loaded[b], loaded[a])
    for name, lemma in loaded.items():
        right = sum((lemma(form) or form) == expected.strip() for form, expected in gold)
        known = sum(lemma(w) is not None for w in words)
        print(f"{name:<50} gold {right / len(gold):.3f} ({right}/{len(gold)}), "
              f"words known {known / max(len(words), 1):.3f}")


if __name__ == "__main__":
    main()
