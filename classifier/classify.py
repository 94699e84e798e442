"""The library entry point: ``Classifier.load()`` then ``classify`` / ``classify_many``.

The flow a request takes, one module per stage: normalise and mask
(:mod:`.normalise`, :mod:`.masking`) -> match rules (:mod:`.matching`) -> model
(:mod:`.model`) -> decide (:mod:`.decide`) -> reply (:mod:`.reply`) -> output
(:mod:`.result`, :mod:`.batch`).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from . import spec
from .collector import collector_paused
from .decide import Decision, decide
from .errors import Errors, InputError
from .features import Analysed, Analyser
from .locations import Source, model_source, rules_source
from .model import RequestModel
from .model_files import load_model
from .normalise import masked_text
from .reply import check_templates, write_reply
from .request import NumberedRecord, Request, shown_in_message
from .result import Result

log = logging.getLogger("intake")

#: Requests analysed and predicted together by classify_many.
BATCH_SIZE = 256


class Classifier:
    """Rules plus (optionally) a trained model; classifies requests per SPEC."""

    def __init__(self, analyser: Analyser, model: RequestModel | None = None,
                 manifest: dict[str, Any] | None = None,
                 sources: dict[str, Source] | None = None) -> None:
        self.analyser = analyser
        self.model = model
        self.manifest = manifest or {}
        #: Where the rules and model came from (``rules``, ``model``): path and origin.
        self.sources = sources or {}
        ruleset = analyser.ruleset
        check_templates(ruleset.templates, _templates_file(ruleset.files))
        self.templates = ruleset.templates
        #: per language, its pack's templates over the English ones (a part a pack lacks is English)
        self.templates_in = {"en": ruleset.templates}
        for code, pack in ruleset.languages.items():
            if code != "en" and pack.templates:
                self.templates_in[code] = merged = _merged(ruleset.templates, pack.templates)
                check_templates(merged, pack.files[0])
        self.clause_texts = {}
        for rule in ruleset.of_kind("clause"):
            self.clause_texts.setdefault(rule.label, rule.sla or "")
        #: per language, the SLA texts a reply quotes (the English ones where a pack has none)
        self.clause_texts_in = {code: {**self.clause_texts, **pack.sla}
                                for code, pack in ruleset.languages.items() if pack.sla}

    @classmethod
    def load(cls, path: str | Path | None = None, *, rules_dir: str | Path | None = None,
             use_model: bool = True) -> "Classifier":
        """The model and rules given, else those named by ``$INTAKE_MODEL`` and
        ``$INTAKE_RULES``, else the bundled ones; ``use_model=False`` is rules alone."""
        rules = rules_source(rules_dir)
        analyser = Analyser(rules.path)
        if not use_model:
            return cls(analyser, sources={"rules": rules})
        model_from = model_source(path)
        model, manifest = load_model(model_from.path)
        model.rules_dir = None if rules_dir is None else str(rules_dir)
        trained_with = manifest.get("vocabulary_digest")
        if trained_with and trained_with != analyser.ruleset.vocabulary_digest:
            log.warning(Errors.W090.format(model=model_from.path, trained=str(trained_with)[:12],
                                           rules=rules.path, used=analyser.ruleset.vocabulary_digest[:12]))
        return cls(analyser, model, manifest, sources={"rules": rules, "model": model_from})

    @property
    def rules_digest(self) -> str:
        return self.analyser.ruleset.digest

    # -- classification ------------------------------------------------------------
    def classify(self, request: Any, *, include_text: bool = False) -> Result:
        """One request (a text, a mapping of SPEC §1 fields, or a Request); with
        ``include_text`` the result carries the request's text with secrets masked."""
        req = Request.from_mapping(request, row=1)
        result = next(self._results([req], include_text))
        if isinstance(result, Exception):
            raise result
        return result

    def classify_many(self, requests: Iterable[Any], batch_size: int = BATCH_SIZE, *,
                      include_text: bool = False) -> Iterator[Result]:
        """Stream results in input order; a record that cannot be read, or whose
        classification fails (E039), yields an error result naming its row and id
        instead of stopping the batch. Items may be texts,
        mappings, Requests, or :class:`NumberedRecord` (row numbers from a file reader);
        otherwise rows are numbered from 1. ``include_text`` adds each request's text,
        secrets masked, to its result (for pipelines that store the text)."""
        it = iter(requests)
        row = 0
        while True:
            chunk = list(islice(it, batch_size))
            if not chunk:
                return
            good: list[Request] = []
            slots: list[Result | int] = []  # an error result, or the row of a request in good
            for record in chunk:
                row += 1
                if isinstance(record, NumberedRecord):
                    row, record = record
                if isinstance(record, InputError):  # a reader already failed on this row
                    slots.append(_error_result(record, row, record.request_id))
                    continue
                try:
                    req = Request.from_mapping(record, row=row)
                except InputError as exc:
                    rid = record.get("id") if isinstance(record, dict) else None
                    slots.append(_error_result(exc, row, rid if rid not in (None, "") else row))
                    continue
                good.append(req if req.id is not None else replace(req, id=str(row)))
                slots.append(row)
            results = self._results(good, include_text)
            requests = iter(good)
            for slot in slots:
                if isinstance(slot, Result):
                    yield slot
                    continue
                result, req = next(results), next(requests)
                if isinstance(result, Exception):
                    result = _failed_result(result, slot, req.id)
                result.row = slot
                yield result

    def classify_frame(self, df: pd.DataFrame, text_col: str = "text") -> pd.DataFrame:
        """A copy of ``df`` with the result columns added (``error`` for unreadable rows)."""
        records = df.rename(columns={text_col: "text"}).to_dict("records")
        records = [{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))} for r in records]
        out = pd.DataFrame([r.to_dict() for r in self.classify_many(records)], index=df.index)
        # the caller's columns (their own id included) stay as they are
        return pd.concat([df, out.drop(columns=[c for c in out.columns if c in df.columns])], axis=1)

    # -- internals ------------------------------------------------------------------
    def _results(self, requests: list[Request], include_text: bool = False) -> Iterator[Result | Exception]:
        """A result per request, in order; the exception instead for one whose classification raised."""
        for start in range(0, len(requests), BATCH_SIZE):
            with collector_paused():  # a whole batch is worked out before any of it is handed on
                results = self._work_out(requests[start:start + BATCH_SIZE], include_text)
            yield from results

    def _work_out(self, requests: list[Request], include_text: bool = False) -> list[Result | Exception]:
        try:
            analysed = list(self.analyser.analyse(requests))
            probas = self._probas(analysed)
        except Exception as exc:  # noqa: BLE001 - one request spoils its batch: find it by working out each alone
            if len(requests) == 1:
                return [exc]
            return [r for req in requests for r in self._work_out([req], include_text)]
        results: list[Result | Exception] = []
        for a, p in zip(analysed, probas):
            try:
                result = self._result(a, decide(a, p))
                if include_text:
                    result.text = masked_text(a.request.text)[0]
                results.append(result)
            except Exception as exc:  # noqa: BLE001 - handed on as that request's error
                results.append(exc)
        return results

    def _probas(self, analysed: list[Analysed]) -> list[dict[str, dict[str, float]] | None]:
        if self.model is None or not analysed:
            return [None] * len(analysed)
        return self.model.label_probabilities(analysed)

    def _result(self, a: Analysed, d: Decision) -> Result:
        code = a.language.code
        reply = write_reply(d, self.templates_in.get(code, self.templates), self.clause_texts_in.get(code, self.clause_texts))
        explanation = dict(d.explanation)
        explanation["review_reasons"] = d.review_reasons
        return Result(
            id=a.request.id, category=d.category, scope=d.scope,
            clauses=[{"id": c, "sla": self.clause_texts.get(c, "")} for c in d.clauses],
            severity=d.severity, response_time_hours=spec.RESPONSE_TIME_HOURS[d.severity],
            missing_info=d.missing_info, delay_reasons=d.delay_reasons, flags=d.flags,
            confidence=d.confidence, needs_review=d.needs_review, explanation=explanation,
            suggested_reply=reply, language=a.language.code)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``, mapping by mapping."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def _templates_file(files: list[Path]) -> Path:
    """The rules file that holds the (English) reply templates (named in template errors)."""
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
            if re.search(r"(?m)^templates\s*:", text) and not re.search(r"(?m)^language\s*:", text):
                return f
        except OSError:
            continue
    root = Path(os.path.commonpath(files)) if files else Path("rules")
    return (root if root.is_dir() else root.parent) / "replies.yaml"


def _error_result(exc: InputError, row: int, rid: Any) -> Result:
    log.warning("row %s not classified: %s", row, exc)
    return Result(id=str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None,
                  error={"row": row, "field": getattr(exc, "field", None), "message": str(exc)}, row=row)


def _failed_result(exc: Exception, row: int, rid: str | None) -> Result:
    """The error result of a request whose classification raised ``exc`` (E039); the
    message names the exception (masked and cut, as it may quote the request)."""
    log.debug("row %s: classification failed", row, exc_info=exc)
    detail = shown_in_message(f"{type(exc).__name__}: {exc}", 200)
    return _error_result(InputError(Errors.E039.format(row=row, detail=detail), row=row), row, rid)
