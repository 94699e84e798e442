"""How well the steps-to-reproduce detector finds reports that LACK steps, on 1,102
real bug reports written by others (Chaparro et al., FSE 2017; see
../shared/external/README.md), twice:

- against labels by SPEC §5 (``--labels``: JSON Lines with ``row``, the 0-based row of
  the CSV, and ``steps_present``; default ``../shared/external/steps_spec_dev.jsonl``,
  200 reports). This is what the detector is meant to do;
- against the corpus's own labels ("steps missing" is ``has_s2r == 0``), whose
  definition of steps is broader than SPEC's: a comparison with the paper.

    python benchmarks/missing_steps.py [--external ../shared/external] [--labels FILE] [--show N]

The detector is the one the classifier uses for SPEC §5 (the steps_to_reproduce
rules in rules/info.yaml), run through the same analyser; nothing here is tuned
per report. Ends with:
missing steps (SPEC labels): precision P recall R (n=N); corpus labels: precision P recall R (n=1102)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from classifier.decide import _present
from classifier.features import Analyser
from classifier.request import Request

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = {"precision": 0.692, "recall": 0.830}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--external", type=Path, default=ROOT.parent / "shared" / "external")
    ap.add_argument("--labels", type=Path, default=None,
                    help="SPEC §5 labels, JSON Lines with row and steps_present (default: steps_spec_dev.jsonl "
                         "in --external)")
    ap.add_argument("--show", type=int, default=0, help="print this many misclassified reports of each kind")
    args = ap.parse_args()
    labels_path = args.labels or args.external / "steps_spec_dev.jsonl"
    df = pd.read_csv(args.external / "bug_reports_s2r.csv")
    analyser = Analyser()
    requests = [Request(text=f"{t}\n{d if isinstance(d, str) else ''}".strip() or " ") for t, d in zip(df["title"], df["description"])]
    has_steps = [bool(_present(a.hits, "steps_to_reproduce")) for a in analyser.analyse(requests)]
    df["pred_missing"] = [not h for h in has_steps]
    df["gold_missing"] = df["has_s2r"] == 0
    tp = int((df.pred_missing & df.gold_missing).sum())
    fp = int((df.pred_missing & ~df.gold_missing).sum())
    fn = int((~df.pred_missing & df.gold_missing).sum())
    precision, recall = _precision_recall(tp, fp, fn)
    print(f"reports: {len(df)}, without steps (gold): {int(df.gold_missing.sum())}, flagged missing: {int(df.pred_missing.sum())}")
    print("per system (precision/recall of 'missing'):")
    for system, g in df.groupby("system"):
        t = int((g.pred_missing & g.gold_missing).sum())
        p = t / max(1, int(g.pred_missing.sum()))
        r = t / max(1, int(g.gold_missing.sum()))
        print(f"  {system:18} P {p:.3f} R {r:.3f} (n={len(g)})")
    print(f"published best (Chaparro et al. 2017): precision {PUBLISHED['precision']} recall {PUBLISHED['recall']}")
    for kind, mask in (("flagged missing but has steps", df.pred_missing & ~df.gold_missing),
                       ("steps found but gold has none", ~df.pred_missing & df.gold_missing)):
        for _, r in df[mask].head(args.show).iterrows():
            print(f"--- {kind}: {r.system} {r.bug_id}: {r.title}\n{str(r.description)[:600]}")
    labels = [json.loads(line) for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    spec = df.iloc[[int(x["row"]) for x in labels]].copy()
    spec["gold_missing"] = [not x["steps_present"] for x in labels]
    spec_tp = int((spec.pred_missing & spec.gold_missing).sum())
    spec_fp = int((spec.pred_missing & ~spec.gold_missing).sum())
    spec_fn = int((~spec.pred_missing & spec.gold_missing).sum())
    spec_p, spec_r = _precision_recall(spec_tp, spec_fp, spec_fn)
    print(f"SPEC §5 labels ({labels_path.name}): {len(spec)} reports, without steps: {int(spec.gold_missing.sum())}, "
          f"flagged missing: {int(spec.pred_missing.sum())} (false: {spec_fp}, missed: {spec_fn})")
    for kind, mask in (("SPEC: flagged missing but has steps", spec.pred_missing & ~spec.gold_missing),
                       ("SPEC: steps found but none by SPEC", ~spec.pred_missing & spec.gold_missing)):
        for _, r in spec[mask].head(args.show).iterrows():
            print(f"--- {kind}: {r.system} {r.bug_id}: {r.title}\n{str(r.description)[:600]}")
    print(f"missing steps (SPEC labels): precision {spec_p:.3f} recall {spec_r:.3f} (n={len(spec)}); "
          f"corpus labels: precision {precision:.3f} recall {recall:.3f} (n={len(df)})")


def _precision_recall(tp: int, fp: int, fn: int) -> tuple[float, float]:
    return (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0)


if __name__ == "__main__":
    main()
