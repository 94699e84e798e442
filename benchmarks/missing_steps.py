"""How well the steps-to-reproduce detector finds reports that LACK steps, on 1,102
real bug reports written by others (Chaparro et al., FSE 2017; see
../shared/external/README.md). "Steps missing" is has_s2r == 0.

    python benchmarks/missing_steps.py [--external ../shared/external]

The detector is the one the classifier uses for SPEC §5 (the steps_to_reproduce
rules in rules/info.yaml), run through the same analyser; nothing here is tuned
per report. Ends with: missing steps: precision P recall R (n=1102)
"""
from __future__ import annotations

import argparse
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
    ap.add_argument("--show", type=int, default=0, help="print this many misclassified reports of each kind")
    args = ap.parse_args()
    df = pd.read_csv(args.external / "bug_reports_s2r.csv")
    analyser = Analyser()
    requests = [Request(text=f"{t}\n{d if isinstance(d, str) else ''}".strip() or " ") for t, d in zip(df["title"], df["description"])]
    has_steps = [bool(_present(a.hits, "steps_to_reproduce")) for a in analyser.analyse(requests)]
    df["pred_missing"] = [not h for h in has_steps]
    df["gold_missing"] = df["has_s2r"] == 0
    tp = int((df.pred_missing & df.gold_missing).sum())
    fp = int((df.pred_missing & ~df.gold_missing).sum())
    fn = int((~df.pred_missing & df.gold_missing).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
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
    print(f"missing steps: precision {precision:.3f} recall {recall:.3f} (n={len(df)})")


if __name__ == "__main__":
    main()
