"""Decide: combine rule hits and model probabilities into the SPEC §2 findings.

Every policy lives here, with named constants, in the order SPEC lists them:
clause and scope (§3), severity (§4), missing information (§5), delay reasons
(§6), flags (§7), confidence and ``needs_review``. The rule/model combination is
one function, :func:`combine_clause`, so the policy reads in one place.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from . import spec
from .features import Analysed
from .matching import Hit


@dataclass(frozen=True)
class Policy:
    """The named weights of the rules-plus-model policy.

    The defaults are chosen by 5-fold cross-validation on the train split
    (``benchmarks/tune_policy.py``), judged only on the train rows the rule authors
    never saw (writing waves 2 and 3); the test split is never used to choose them.
    Rule hits are not model features: the model reads words and vocabulary concepts,
    and the rules act here, so a rule added, edited or removed in YAML changes
    decisions without retraining. Each rule's ``weight`` is how far a hit of it is
    trusted; the rules of a clause combine by noisy-or.
    """

    #: share of a clause's score that comes from its rules (the rest from the model)
    rule_weight: float = 0.2
    #: within the model's share, weight of p(category) against p(clause)
    category_weight: float = 0.25
    #: share of a severity's score that comes from severity cues
    severity_rule_weight: float = 0.2
    #: needs_review when the category confidence is below this
    review_below: float = 0.5


DEFAULT_POLICY = Policy()
#: Rules alone (no model, or the model is switched off): the clause when no clause rule fired.
RULES_ONLY_FALLBACK = "3.6.in.1"
#: Rules alone: severity by category when no cue fired (questions are low, problems medium).
RULES_ONLY_SEVERITY = {"installation": "medium", "performance": "medium", "updates": "medium",
                       "product_error": "medium", "development": "low", "general": "low", "other": "low"}
# ---- delay reasons and flags ---------------------------------------------------
#: Clauses whose request always needs a product change or custom work (SPEC §6).
CUSTOM_IMPROVEMENT_CLAUSES = frozenset({"3.6.in.4", "3.5.out.2", "3.5.out.4", "3.5.out.5", "3.5.out.6",
                                        "3.2.out.3", "1.4.out.1"})
#: A product version whose year part is at most this, stated as current, is an old version.
OLD_VERSION_MAX_YEAR = 22
#: Image formats that must be archived before sending (SPEC §7, §4.6).
BAD_IMAGE_EXTENSIONS = frozenset({"bmp", "tif", "tiff", "heic"})
#: urgent_recovery needs a project down or with key parts broken (SPEC §7): not one
#: broken feature (medium) nor an incident already over or a question (low).
RECOVERY_SEVERITIES = frozenset({"critical", "high"})
#: A problem caused by installing an update (§3.3 in 2) that left key parts broken is
#: "a failed update", which urgent_recovery names.
BROKEN_BY_UPDATE_CLAUSE = "3.3.in.2"

_VERSION_YEAR = re.compile(r"(?<![\d.])(\d{2})\.(?:\d{1,3}|x)")


@dataclass
class Decision:
    """Everything decided about one request, before the reply is written."""

    category: str
    clause: str
    scope: str
    clauses: list[str]
    severity: str
    missing_info: list[str]
    delay_reasons: list[str]
    flags: list[str]
    confidence: float
    needs_review: bool
    review_reasons: list[str] = field(default_factory=list)
    explanation: dict[str, Any] = field(default_factory=dict)


def _noisy_or(weights: list[float]) -> float:
    return 1.0 - math.prod(1.0 - w for w in weights) if weights else 0.0


def rule_clause_scores(hits: list[Hit]) -> dict[str, float]:
    """Clause -> evidence from its rules (noisy-or of the weights of the distinct rules that fired)."""
    by_clause: dict[str, dict[str, float]] = {}
    for h in hits:
        if h.kind == "clause":
            by_clause.setdefault(h.label, {})[h.rule_id] = h.weight
    return {c: _noisy_or(list(ws.values())) for c, ws in by_clause.items()}


_CLAUSE_CATEGORY = [(clause, spec.CLAUSES[clause][0]) for clause in sorted(spec.CLAUSES)]
#: category -> its clauses, in the order of _CLAUSE_CATEGORY (so sums add up in one order)
_CATEGORY_CLAUSES: dict[str, list[str]] = {}
for _clause, _category in _CLAUSE_CATEGORY:
    _CATEGORY_CLAUSES.setdefault(_category, []).append(_clause)


def combine_clause(rule_scores: dict[str, float], p_clause: dict[str, float] | None,
                   p_category: dict[str, float] | None,
                   policy: Policy = DEFAULT_POLICY) -> tuple[str, dict[str, float], str]:
    """The clause policy. Returns (clause, score per clause, which policy decided).

    - ``model+rules``: score = rule_weight * rule evidence + (1 - rule_weight) *
      (category_weight * p(category of clause) + (1 - category_weight) * p(clause)).
    - ``rules``: no model; the clause whose rules give the most evidence, else
      RULES_ONLY_FALLBACK.
    """
    if p_clause is None:
        if not rule_scores:
            return RULES_ONLY_FALLBACK, {RULES_ONLY_FALLBACK: 0.0}, "rules-fallback"
        best = max(sorted(rule_scores), key=lambda c: rule_scores[c])
        return best, dict(rule_scores), "rules"
    p_cat, p_cl = (p_category or {}).get, p_clause.get
    rule_w, cat_w = policy.rule_weight, policy.category_weight
    from_category = {category: cat_w * p_cat(category, 0.0) for category in _CATEGORY_CLAUSES}
    clause_w = 1 - cat_w
    # in sorted order: ties go to the first
    if rule_w:
        rule, model_w = rule_scores.get, 1 - rule_w
        scores = {clause: rule_w * rule(clause, 0.0) + model_w * (from_category[category] + clause_w * p_cl(clause, 0.0))
                  for clause, category in _CLAUSE_CATEGORY}
    else:  # the same numbers: 0 * rules + 1 * model is the model's score exactly
        scores = {clause: from_category[category] + clause_w * p_cl(clause, 0.0) for clause, category in _CLAUSE_CATEGORY}
    best = max(scores, key=scores.__getitem__)
    return best, scores, "model+rules"


def combine_severity(hits: list[Hit], p_severity: dict[str, float] | None, category: str,
                     policy: Policy = DEFAULT_POLICY) -> tuple[str, str]:
    """The severity policy: cues and model blended like clauses; rules alone take the
    most severe strongest cue, else the category default."""
    cues: dict[str, float] = {}
    for h in hits:
        if h.kind == "severity":
            cues[h.label] = max(cues.get(h.label, 0.0), h.weight)
    if p_severity is None:
        if not cues:
            return RULES_ONLY_SEVERITY[category], "rules-fallback"
        top = max(cues.values())
        return next(s for s in spec.SEVERITIES if cues.get(s) == top), "rules"
    scores = {s: policy.severity_rule_weight * cues.get(s, 0.0) + (1 - policy.severity_rule_weight) * p_severity.get(s, 0.0)
              for s in spec.SEVERITIES}
    return max(spec.SEVERITIES, key=lambda s: scores[s]), "model+rules"


def _info_by_label(hits: list[Hit]) -> dict[str, list[Hit]]:
    """The ``info`` hits by label, so a request's hits are sorted out once."""
    out: dict[str, list[Hit]] = {}
    for h in hits:
        if h.kind == "info":
            out.setdefault(h.label, []).append(h)
    return out


def _present(hits: list[Hit], item: str, by_label: dict[str, list[Hit]] | None = None) -> list[Hit]:
    """Hits saying ``item`` is present, minus those overlapped by a ``not_<item>`` hit.
    ``by_label``: ``_info_by_label(hits)``, when the caller has it already."""
    by_label = _info_by_label(hits) if by_label is None else by_label
    found = by_label.get(item, [])
    blockers = [(h.start, h.end) for h in by_label.get("not_" + item, ())]
    if not blockers:
        return found
    return [h for h in found if not any(a < h.end and h.start < b for a, b in blockers)]


def _labels(hits: list[Hit], kind: str) -> set[str]:
    return {h.label for h in hits if h.kind == kind}


def stated_version_years(hits: list[Hit], by_label: dict[str, list[Hit]] | None = None) -> list[int]:
    """Year parts of the product versions the request states (``23.850`` -> 23)."""
    years = []
    for h in _present(hits, "version", by_label):
        m = _VERSION_YEAR.search(h.text)
        if m:
            years.append(int(m.group(1)))
    return years


#: Ways to decide category, clause and severity: both sources, or one alone (for evaluation).
MODES = ("combined", "rules", "model")


def decide(analysed: Analysed, probas: dict[str, dict[str, float]] | None = None,
           mode: str = "combined", policy: Policy = DEFAULT_POLICY) -> Decision:
    """All findings for one request. ``probas`` maps ``category``/``clause``/``severity``
    to the model's probabilities (None: rules alone). ``mode="model"`` ignores clause
    rules and severity cues, ``mode="rules"`` ignores the model; detectors for missing
    information, delay reasons and flags are rules in every mode."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not allowed. Possible values: {list(MODES)}")
    hits = analysed.hits
    request = analysed.request
    probas = {} if mode == "rules" or probas is None else probas
    rule_scores = rule_clause_scores(hits)
    if mode == "model" and probas:
        clause, scores, clause_policy = combine_clause({}, probas.get("clause"), probas.get("category"), policy)
        clause_policy = "model"
    else:
        clause, scores, clause_policy = combine_clause(rule_scores, probas.get("clause"), probas.get("category"), policy)
    category, scope = spec.CLAUSES[clause]
    # the top three, as heapq.nlargest would give them (it is sorted()[:3], ties in order),
    # sorted in C: nlargest's heap is Python code, slower on a few dozen items
    ranked = sorted((c for c, v in scores.items() if v > 0), key=scores.__getitem__, reverse=True)[:3]
    # the chosen clause, then up to two others whose rules fired, strongest evidence first
    clauses = [clause] + sorted((c for c in rule_scores if c != clause), key=lambda c: (-rule_scores[c], c))[:2]
    total = sum(scores.values())
    cat_score = sum(scores.get(c, 0.0) for c in _CATEGORY_CLAUSES[category])
    confidence = cat_score / total if total > 0 else 0.0

    if mode == "model" and "severity" in probas:
        severity = max(probas["severity"], key=lambda k: probas["severity"][k])
        severity_policy = "model"
    else:
        severity, severity_policy = combine_severity(hits, probas.get("severity"), category, policy)

    # §5 missing information
    by_label = _info_by_label(hits)
    info = set(by_label)
    # SPEC §5: a cloud portal (an address on a bitrix24.* domain, or product: cloud) has
    # no version; saying "cloud" or naming a plan counts only for spotting contradictions
    cloud_hits = _present(hits, "cloud", by_label)
    portal_address = any(h.rule_id == "info.cloud.portal_address" for h in cloud_hits)
    cloud_portal = request.product == "cloud" or portal_address
    cloud = cloud_portal or bool(cloud_hits)
    present = {item for item in ("url", "version", "edition", "steps_to_reproduce") if _present(hits, item, by_label)}
    required = [i for i in spec.REQUIRED_INFO[category] if not (i == "version" and cloud_portal)]
    missing = [i for i in spec.MISSING_ITEMS if i in required and i not in present]

    # §6 delay reasons
    delays = set(_labels(hits, "delay"))
    if missing:
        delays.add("missing_information")
    if scope == "out_of_scope":
        delays.add("out_of_scope")
    if clause in CUSTOM_IMPROVEMENT_CLAUSES:
        delays.add("requires_custom_improvement")
    years = stated_version_years(hits, by_label)
    old_version = bool(years) and min(years) <= OLD_VERSION_MAX_YEAR
    if old_version:
        delays.add("updates_not_installed")
    contradictions = []
    if cloud and "server_access" in info:
        contradictions.append("cloud portal with server-side files or access")
    if "up_to_date_claim" in info and old_version:
        contradictions.append("claims to be up to date beside an old version")
    if request.product == "cloud" and "self_hosted" in info:
        contradictions.append("product field says cloud, the text a self-hosted installation")
    if request.product == "self_hosted" and portal_address:
        contradictions.append("product field says self_hosted, the text a cloud portal")
    if contradictions:
        delays.add("misleading_information")

    # §7 flags
    flags = set(_labels(hits, "flag"))
    if analysed.normalised.masked:
        flags.add("credentials_present")
    bad_images = [a for a in request.attachments if a.rsplit(".", 1)[-1].lower() in BAD_IMAGE_EXTENSIONS and "." in a]
    if bad_images:
        flags.add("attachment_format")
    recover, recovery = _recovery(severity, clause, "urgent_recovery" in flags)
    if recover:
        flags.add("urgent_recovery")
    else:
        flags.discard("urgent_recovery")
    if request.channel is not None and request.channel not in spec.OFFICIAL_CHANNELS:
        flags.add("unofficial_channel")

    review = []
    if confidence < policy.review_below:
        review.append(f"confidence {confidence:.2f} below {policy.review_below}")
    if probas.get("category") and rule_scores:
        rule_top = max(sorted(rule_scores), key=lambda c: rule_scores[c])
        model_top = max(probas["category"], key=lambda c: probas["category"][c])
        if spec.CLAUSES[rule_top][0] != model_top:
            review.append(f"rules point to {spec.CLAUSES[rule_top][0]} ({rule_top}), the model to {model_top}")
    language = analysed.language
    if not language.supported:
        review.append(f"language {language.code} has no language pack: read with the English rules, "
                      "replied to in English")
    if analysed.normalised.truncated:
        review.append("text was cut before classification")
    for rule_id in analysed.timed_out:
        review.append(f"rule {rule_id} was skipped: its regex ran out of time on this text")

    explanation = {
        "rules": _explain_hits(hits),
        "model": {name: [{"label": k, "probability": round(v, 4)}
                         for k, v in sorted(p.items(), key=itemgetter(1), reverse=True)[:3]]
                  for name, p in probas.items()},
        "policy": {"clause": clause_policy, "severity": severity_policy,
                   "rule_weight": policy.rule_weight if clause_policy == "model+rules" else 1.0,
                   **({"urgent_recovery": recovery} if recovery else {})},
        "clause_scores": {c: round(scores[c], 4) for c in ranked},
        "cloud_portal": cloud_portal,
        "misleading": contradictions,
        "masked_secrets": len(analysed.normalised.masked),
        "bad_attachments": bad_images,
        "truncated": analysed.normalised.truncated,
        "language": {"code": language.code, "source": language.source, "supported": language.supported,
                     **({"rules_read": language.reads} if language.reads else {})},
    }
    if analysed.normalised.truncated:
        explanation["original_length"] = analysed.normalised.original_length
    if analysed.timed_out:
        explanation["timed_out_rules"] = list(analysed.timed_out)
    return Decision(category=category, clause=clause, scope=scope, clauses=clauses, severity=severity,
                    missing_info=missing, delay_reasons=[d for d in spec.DELAY_REASONS if d in delays],
                    flags=[f for f in spec.FLAGS if f in flags], confidence=round(float(confidence), 4),
                    needs_review=bool(review), review_reasons=review, explanation=explanation)


def _recovery(severity: str, clause: str, rule_fired: bool) -> tuple[bool, str]:
    """Whether urgent_recovery is set, and why ("" when it is not and no rule asked for it;
    "no: …" when its rule fired but SPEC §7 rules it out)."""
    if severity == "critical":
        return True, "severity critical"
    if severity not in RECOVERY_SEVERITIES:
        return False, f"no: severity {severity}, no project to bring back" if rule_fired else ""
    if rule_fired:
        return True, "a flag rule fired (explanation.rules)"
    if clause == BROKEN_BY_UPDATE_CLAUSE:
        return True, f"an update left key parts broken ({clause}, severity {severity})"
    return False, ""


def _explain_hits(hits: list[Hit]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for h in hits:
        entry = out.setdefault(h.rule_id, {"id": h.rule_id, "kind": h.kind, "label": h.label,
                                           "weight": h.weight, "matched": []})
        words = " ".join(h.text.split())[:80]
        if words not in entry["matched"] and len(entry["matched"]) < 5:
            entry["matched"].append(words)
    return list(out.values())
