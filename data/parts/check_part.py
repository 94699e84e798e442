"""Check one part file against the labelling guide: python check_part.py partN.jsonl"""
import json, re, sys
from collections import Counter
from itertools import combinations

CAT = {"3.1": "installation", "3.2": "performance", "3.3": "updates", "3.4": "product_error",
       "3.5": "development", "3.6": "general", "1.3": "other", "1.4": "other", "4.5": "other"}
N = {"3.1": (5, 5), "3.2": (3, 3), "3.3": (2, 2), "3.4": (2, 4), "3.5": (2, 6), "3.6": (5, 0),
     "1.3": (0, 1), "1.4": (0, 1), "4.5": (0, 1)}
CLAUSES = {f"{s}.in.{i}" for s, (a, b) in N.items() for i in range(1, a + 1)} | \
          {f"{s}.out.{i}" for s, (a, b) in N.items() for i in range(1, b + 1)}
REQ = {"product_error": ["edition", "steps_to_reproduce", "url", "version"],
       "updates": ["edition", "steps_to_reproduce", "url", "version"],
       "installation": ["edition", "url", "version"], "performance": ["edition", "url", "version"]}
DELAY = {"missing_information", "not_reproducible", "updates_not_installed",
         "requires_custom_improvement", "improper_use", "unlicensed_copy", "out_of_scope",
         "misleading_information", "abusive_language", "assistant_circumvention"}
FLAGS = {"multiple_issues", "credentials_present", "attachment_format", "urgent_recovery",
         "unofficial_channel"}
errs = []
rows = []
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    if not line.strip():
        continue
    try:
        r = json.loads(line)
    except Exception as e:
        errs.append(f"line {n}: bad JSON {e}"); continue
    rows.append(r)
    p = f"line {n} {r.get('id')}"
    c = r.get("clause")
    if c not in CLAUSES: errs.append(f"{p}: bad clause {c}"); continue
    if r.get("category") != CAT[c[:3]]: errs.append(f"{p}: category should be {CAT[c[:3]]}")
    if r.get("scope") != ("out_of_scope" if ".out." in c else "in_scope"): errs.append(f"{p}: scope")
    if r.get("severity") not in {"critical", "high", "medium", "low"}: errs.append(f"{p}: severity")
    if not isinstance(r.get("text"), str) or not r["text"].strip(): errs.append(f"{p}: text")
    for k in ("missing_info", "delay_reasons", "flags"):
        v = r.get(k)
        if not isinstance(v, list) or v != sorted(set(v)): errs.append(f"{p}: {k} must be a sorted list without duplicates")
    mi = set(r.get("missing_info", []))
    if not mi <= set(REQ.get(r["category"], [])): errs.append(f"{p}: missing_info {mi} not required for {r['category']}")
    d = set(r.get("delay_reasons", []))
    if not d <= DELAY: errs.append(f"{p}: unknown delay {d - DELAY}")
    if ("missing_information" in d) != bool(mi): errs.append(f"{p}: missing_information iff missing_info")
    if ("out_of_scope" in d) != (r.get("scope") == "out_of_scope"): errs.append(f"{p}: out_of_scope delay iff scope out")
    f = set(r.get("flags", []))
    if not f <= FLAGS: errs.append(f"{p}: unknown flag {f - FLAGS}")
    ch = r.get("channel")
    if ch is not None and ch not in {"webform", "live_chat", "email", "other"}: errs.append(f"{p}: channel")
    if ("unofficial_channel" in f) != (ch in {"email", "other"}): errs.append(f"{p}: unofficial_channel iff channel email/other")
    cloud = r.get("product") == "cloud" or re.search(r"\.bitrix24\.[a-z.]+", r["text"] + " " + r.get("subject", "") or "")
    if cloud and "version" in mi: errs.append(f"{p}: cloud portal must not miss version")
    if r["severity"] == "critical" and "urgent_recovery" not in f: errs.append(f"{p}: critical usually needs urgent_recovery (check)")

def grams(t):
    w = re.findall(r"\w+", t.lower())
    return {tuple(w[i:i + 3]) for i in range(len(w) - 2)}
G = [(r.get("id"), grams(r.get("text", ""))) for r in rows]
for (a, ga), (b, gb) in combinations(G, 2):
    if ga and gb and len(ga & gb) / min(len(ga), len(gb)) > 0.5:
        errs.append(f"near-duplicate: {a} ~ {b}")
print("\n".join(errs) or "no errors")
print(len(rows), "rows")
for k in ("clause", "severity", "category"):
    print(k, dict(sorted(Counter(r.get(k) for r in rows).items())))
for k in ("delay_reasons", "flags", "missing_info"):
    print(k, dict(sorted(Counter(x for r in rows for x in r.get(k, [])).items())))
print("complete reports", sum(1 for r in rows if r.get("category") in REQ and not r.get("missing_info")))
