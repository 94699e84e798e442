"""Labelled requests: reading them (JSONL or CSV) and checking them against SPEC.

Used by training, evaluation, the rule audit and the data tests. A CSV holds list
fields as ``;``-separated values.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from . import spec
from .errors import Errors, InputError

LIST_FIELDS = ("missing_info", "delay_reasons", "flags", "attachments")
DEFAULT_DATA = Path(__file__).resolve().parent.parent / "data" / "tickets.jsonl"
#: Coverage the corpus must keep (issue 3): per main clause, severity, delay reason and flag.
MIN_PER_CLAUSE, MIN_PER_SEVERITY, MIN_PER_DELAY, MIN_PER_FLAG, MIN_COMPLETE = 20, 120, 30, 30, 150


def _split_list(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(";") if v.strip()]


def read_labelled(path: str | Path, *, text_col: str = "text", label_col: str | None = None,
                  fmt: str | None = None) -> pd.DataFrame:
    """Read labelled requests into a DataFrame with at least a ``text`` column.

    ``text_col`` and ``label_col`` rename an analyst's own columns to ``text`` and
    ``category``. List fields become Python lists; a missing ``split`` is left out.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(Errors.E041.format(path=path))
    fmt = fmt or ("csv" if path.suffix.lower() in (".csv", ".tsv") else "jsonl")
    if fmt == "csv":
        df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str,
                         keep_default_na=False, encoding="utf-8-sig")
    elif fmt == "jsonl":
        df = pd.read_json(path, lines=True, dtype=False)
    else:
        raise InputError(Errors.E040.format(fmt=fmt, allowed="jsonl, csv"))
    if text_col not in df.columns:
        raise InputError(Errors.E025.format(path=path, column=text_col, found=", ".join(map(str, df.columns))))
    rename = {text_col: "text"}
    if label_col is not None:
        if label_col not in df.columns:
            raise InputError(Errors.E025.format(path=path, column=label_col, found=", ".join(map(str, df.columns))))
        rename[label_col] = "category"
    # a column already called "text" or "category" gives way to the one renamed to it
    # (two columns of one name make df["category"] a frame, not the labels)
    df = df.drop(columns=[new for old, new in rename.items() if old != new and new in df.columns])
    df = df.rename(columns=rename)
    for col in LIST_FIELDS:
        if col in df.columns:
            df[col] = df[col].map(_split_list)
    df["text"] = df["text"].fillna("").astype(str)
    if "subject" in df.columns:
        df["subject"] = df["subject"].map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    return df


def read_labelled_files(paths: Sequence[str | Path], *, text_col: str = "text",
                        label_col: str | None = None) -> pd.DataFrame:
    """Several labelled files read as one (each as :func:`read_labelled` reads it).

    When some file has a ``split`` column, the rows of a file without one are all
    training rows (agents' corrections beside the corpus: ``intake feedback export``);
    a row whose ``id`` a later file has again is replaced by the later one."""
    frames = [read_labelled(p, text_col=text_col, label_col=label_col) for p in paths]
    if len(frames) == 1:
        return frames[0]
    if any("split" in f.columns for f in frames):
        frames = [f if "split" in f.columns else f.assign(split="train") for f in frames]
    df = pd.concat(frames, ignore_index=True, sort=False)
    if "id" in df.columns:
        key = df["id"].map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
        later = key.notna() & key.duplicated(keep="last")
        df = df[~later]
    return df.reset_index(drop=True)


def files_sha256(paths: Sequence[str | Path]) -> str:
    """One file's SHA-256, or for several the SHA-256 of their hashes in order."""
    if len(paths) == 1:
        return file_sha256(paths[0])
    return hashlib.sha256("".join(file_sha256(p) for p in paths).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def label_problems(row: dict[str, Any]) -> list[str]:
    """Every way one labelled row breaks SPEC (empty list when it is legal and consistent)."""
    out = []
    clause = row.get("clause")
    if clause not in spec.CLAUSES:
        return [f"clause {clause!r} is not a SPEC clause id"]
    category, scope = spec.CLAUSES[clause]
    if row.get("category") != category:
        out.append(f"category {row.get('category')!r} does not match clause {clause} ({category})")
    if row.get("scope") != scope:
        out.append(f"scope {row.get('scope')!r} does not match clause {clause} ({scope})")
    if row.get("severity") not in spec.SEVERITIES:
        out.append(f"severity {row.get('severity')!r} is not one of {spec.SEVERITIES}")
    missing = set(row.get("missing_info") or [])
    delays = set(row.get("delay_reasons") or [])
    flags = set(row.get("flags") or [])
    if not missing <= set(spec.REQUIRED_INFO[category]):
        out.append(f"missing_info {sorted(missing)} lists items not required for {category}")
    if not delays <= set(spec.DELAY_REASONS):
        out.append(f"unknown delay reasons {sorted(delays - set(spec.DELAY_REASONS))}")
    if not flags <= set(spec.FLAGS):
        out.append(f"unknown flags {sorted(flags - set(spec.FLAGS))}")
    if ("missing_information" in delays) != bool(missing):
        out.append("missing_information must be set exactly when missing_info is not empty")
    if ("out_of_scope" in delays) != (scope == "out_of_scope"):
        out.append("out_of_scope must be set exactly when scope is out_of_scope")
    channel = row.get("channel")
    if channel not in (None, "") and not (isinstance(channel, float) and pd.isna(channel)):
        if channel not in spec.CHANNELS:
            out.append(f"channel {channel!r} is not one of {spec.CHANNELS}")
        elif ("unofficial_channel" in flags) != (channel not in spec.OFFICIAL_CHANNELS):
            out.append("unofficial_channel must be set exactly when channel is not webform/live_chat")
    elif "unofficial_channel" in flags:
        out.append("unofficial_channel needs a channel field")
    return out


def coverage(df: pd.DataFrame) -> dict[str, Counter]:
    """Label counts the corpus is required to keep (see the MIN_* constants)."""
    required = df["category"].map(lambda c: bool(spec.REQUIRED_INFO.get(c)))
    complete = required & df["missing_info"].map(lambda m: not m)
    return {
        "clause": Counter(df["clause"]),
        "severity": Counter(df["severity"]),
        "delay_reasons": Counter(x for v in df["delay_reasons"] for x in v),
        "flags": Counter(x for v in df["flags"] for x in v),
        "complete_reports": Counter({"complete": int(complete.sum())}),
        "split": Counter(df["split"]) if "split" in df.columns else Counter(),
    }


def coverage_shortfalls(df: pd.DataFrame) -> list[str]:
    """Which coverage minimums the corpus misses (empty when all hold)."""
    cov = coverage(df)
    out = [f"clause {c}: {cov['clause'][c]} < {MIN_PER_CLAUSE}" for c in spec.CLAUSES if cov["clause"][c] < MIN_PER_CLAUSE]
    out += [f"severity {s}: {cov['severity'][s]} < {MIN_PER_SEVERITY}" for s in spec.SEVERITIES if cov["severity"][s] < MIN_PER_SEVERITY]
    out += [f"delay reason {d}: {cov['delay_reasons'][d]} < {MIN_PER_DELAY}" for d in spec.DELAY_REASONS if cov["delay_reasons"][d] < MIN_PER_DELAY]
    out += [f"flag {f}: {cov['flags'][f]} < {MIN_PER_FLAG}" for f in spec.FLAGS if cov["flags"][f] < MIN_PER_FLAG]
    if cov["complete_reports"]["complete"] < MIN_COMPLETE:
        out.append(f"complete reports: {cov['complete_reports']['complete']} < {MIN_COMPLETE}")
    return out


def to_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", force_ascii=False))
