"""One digest of everything the classifier outputs, to show that a change meant only
to make it faster (or tidier) changes no result.

    python benchmarks/output_digest.py [--save rows.jsonl] [--external ../shared/external]

Classifies the labelled tickets (``data/tickets.jsonl``) and, when
``../shared/external`` is there, the texts written by others (bug reports, GitHub
issues, prompt injections), once with the bundled model and once with rules alone,
and hashes the JSON of every result (SPEC §2, reply included) in order. Run it before
and after a change: the same digest means byte-identical results. ``--save`` writes
the rows, so two runs that differ can be compared with ``diff``.

Ends with: output digest: <sha256> (N results)
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Iterator

import pandas as pd

from classifier.classify import Classifier

ROOT = Path(__file__).resolve().parent.parent


def requests(external: Path) -> Iterator[dict]:
    """The tickets with their fields, then the external texts that have one (and their titles)."""
    for line in (ROOT / "data" / "tickets.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            yield {k: row[k] for k in ("id", "text", "subject", "channel", "attachments", "product") if k in row}
    sources = [("bug_reports_s2r.csv", "title", "description"), ("nlbse24_test.csv", "title", "body"),
               ("prompt_injections_test.csv", None, "text")]
    for name, subject_col, text_col in sources:
        path = external / name
        if not path.exists():
            continue
        df = pd.read_csv(path)
        for i, row in enumerate(df.itertuples(index=False)):
            text = getattr(row, text_col)
            if not (isinstance(text, str) and text.strip()):
                continue  # a request needs a text (SPEC §1)
            record = {"id": f"{name}:{i}", "text": text}
            subject = getattr(row, subject_col) if subject_col else None
            if isinstance(subject, str):
                record["subject"] = subject
            yield record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--external", type=Path, default=ROOT.parent / "shared" / "external")
    ap.add_argument("--save", type=Path, help="also write every result, one JSON line each")
    args = ap.parse_args()
    records = list(requests(args.external))
    digest = hashlib.sha256()
    out = args.save.open("w", encoding="utf-8") if args.save else None
    count = 0
    for clf in (Classifier.load(), Classifier.load(use_model=False)):
        for result in clf.classify_many(records):
            line = json.dumps(result.to_dict(), ensure_ascii=False, sort_keys=True)
            digest.update(line.encode("utf-8") + b"\n")
            count += 1
            if out is not None:
                out.write(line + "\n")
    if out is not None:
        out.close()
    print(f"output digest: {digest.hexdigest()} ({count} results)")


if __name__ == "__main__":
    main()
