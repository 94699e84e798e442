"""Agents' corrections back to training: the corrected requests in the training format.

``intake feedback export --output corrections.csv`` writes one row per request an agent
corrected at least one label of, with the columns of ``data/tickets.jsonl`` (list
fields ``;``-separated, as :func:`classifier.dataset.read_labelled` reads CSV): the
masked text and the labels as they are after the corrections. ``intake train --data
corrections.csv [--data data/tickets.jsonl]`` trains on them, and ``intake evaluate
--data corrections.csv`` shows how a model does on them. Who corrected what, and the
model and rules behind the original answer, ride along in columns training ignores.
The file has no ``split`` column: alone it is split 80/20 by id like any such file;
beside a file that has one, all its rows are training rows (see ``dataset.read_labelled_files``).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable

#: Columns in order: the request, its labels (data/tickets.jsonl), then where they came from.
COLUMNS = ("id", "subject", "text", "channel", "attachments", "product", "language", "category", "scope", "clause",
           "severity", "missing_info", "delay_reasons", "flags", "corrected_fields", "corrected_by", "corrected_at",
           "model_sha256", "rules_digest")


def training_row(ticket: dict[str, Any]) -> dict[str, str]:
    """One corrected ticket as a row of the training format."""
    labels = ticket["labels"]
    fixes = ticket["corrections"]
    fields = sorted({c["field"] for c in fixes})
    return {
        "id": ticket["id"], "subject": ticket["subject"] or "", "text": ticket["text"],
        "channel": ticket["channel"] or "", "attachments": ";".join(ticket["attachments"] or []),
        "product": ticket["product"] or "", "language": ticket["result"].get("language") or "",
        "category": labels["category"], "scope": labels["scope"], "clause": labels["clause"],
        "severity": labels["severity"], "missing_info": ";".join(labels["missing_info"]),
        "delay_reasons": ";".join(labels["delay_reasons"]), "flags": ";".join(labels["flags"]),
        "corrected_fields": ";".join(fields), "corrected_by": ";".join(sorted({c["by"] for c in fixes})),
        "corrected_at": max(c["at"] for c in fixes).isoformat() if fixes else "",
        "model_sha256": ticket["model_sha256"] or "", "rules_digest": ticket["rules_digest"],
    }


def write_corrections(tickets: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write the corrected ``tickets`` as CSV to ``path``; returns the number of rows."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for ticket in tickets:
            writer.writerow(training_row(ticket))
            n += 1
    return n
