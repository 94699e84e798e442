"""Append part files to data/tickets.jsonl with a split: python data/parts/merge.py ru1.jsonl ...

Within each (language, clause) the rows of the parts given are ranked by the SHA-1 of
"split:" + id (as an integer, ascending); the first quarter (rounded down, at least one)
is `test`, the rest `train`. Rows whose id is already in tickets.jsonl are refused, so
the split of rows already merged never changes.
"""
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICKETS = HERE.parent / "tickets.jsonl"


def rank(row_id: str) -> int:
    return int(hashlib.sha1(("split:" + row_id).encode("utf-8")).hexdigest(), 16)


def main(names: list[str]) -> None:
    known = {json.loads(line)["id"] for line in TICKETS.read_text(encoding="utf-8").splitlines() if line.strip()}
    rows = [json.loads(line) for name in names for line in (HERE / Path(name).name).read_text(encoding="utf-8").splitlines()
            if line.strip()]
    again = [r["id"] for r in rows if r["id"] in known]
    if again:
        sys.exit(f"already in {TICKETS.name}: {', '.join(again[:10])}{' …' if len(again) > 10 else ''}")
    groups = defaultdict(list)
    for r in rows:
        groups[(r["language"], r["clause"])].append(r["id"])
    test = set()
    for ids in groups.values():
        test |= set(sorted(ids, key=rank)[:max(1, len(ids) // 4)])
    with TICKETS.open("a", encoding="utf-8") as out:
        for r in rows:
            r["split"] = "test" if r["id"] in test else "train"
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"appended {len(rows)} rows ({len(test)} test) from {len(names)} parts")


if __name__ == "__main__":
    main(sys.argv[1:])
