"""The bundled model on the real-shapes wave (issue templates, Markdown, forum quotes,
chat transcripts, e-mail threads, pasted configuration; ids ``w…``) and, apart, on the
earlier test rows, so the two can be compared with what they were before a change.

    python benchmarks/real_shapes.py [--data data/tickets.jsonl] [--prefix w] [--ids REGEX]

``--ids 'w[1245]-'`` scores the wave's first four writings alone (184 test rows), ``--ids w6-``
the sixth (30), with the rest of the test split as "earlier test rows" each time.

Only the test split is scored; the model is the bundled one (or $INTAKE_MODEL). Ends with:
real shapes (n=N): category macro-F1 X clause accuracy Y missing_info micro-F1 Z; earlier test rows (n=M): …
"""
from __future__ import annotations

import argparse
import re

from classifier.dataset import read_labelled
from classifier.model import analyse_inputs
from classifier.model_files import load_extra_model, load_model
from classifier.training import TEXT_ONLY_MODEL, _requests, evaluate_frames

#: (how to read a field's figure from field_scores, its name)
FIELDS = ((lambda s: s["category"]["macro_f1"], "category macro-F1"), (lambda s: s["clause_accuracy"], "clause accuracy"),
          (lambda s: s["missing_info_micro_f1"], "missing_info micro-F1"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/tickets.jsonl")
    ap.add_argument("--prefix", default="w", help="id prefix of the real-shapes rows (default: w, as w1-001)")
    ap.add_argument("--ids", default=None, help="a regex the ids of the rows to score must start with (instead of --prefix)")
    args = ap.parse_args()
    df = read_labelled(args.data)
    df = df[df["split"] == "test"]
    wave = df["id"].astype(str).str.match(args.ids or rf"{re.escape(args.prefix)}\d+-")
    model, _ = load_model(None)
    text_model = load_extra_model(None, TEXT_ONLY_MODEL)
    summary = []
    for name, part in (("real shapes", df[wave]), ("earlier test rows", df[~wave])):
        part = part.reset_index(drop=True)
        ev = evaluate_frames(part, analyse_inputs(_requests(part, given_language=False)), model, None, text_model)
        print(f"## {name} ({len(part)} rows)")
        print("| field | rules only | model only | combined |\n|---|---:|---:|---:|")
        for read, label in FIELDS:
            print(f"| {label} | " + " | ".join(f"{read(ev[k]):.3f}" for k in ("rules", "model", "combined")) + " |")
        summary.append(f"{name} (n={len(part)}): " + " ".join(f"{label} {read(ev['combined']):.3f}" for read, label in FIELDS))
    print("; ".join(summary))


if __name__ == "__main__":
    main()
