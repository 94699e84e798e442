"""One catalogue of every error message, each with a code, so messages are
findable, testable and worded the same way everywhere (after spaCy's errors.py)."""
from __future__ import annotations


class Errors:
    # rules: loading and validation
    E001 = "[E001] Rules folder {path} does not exist."
    E002 = "[E002] Rules folder {path} has no .yaml rules files."
    E003 = "[E003] {file}:{line}: YAML syntax error: {problem}"
    E004 = "[E004] {file}:{line}: rule {rule_id}: unknown key '{key}'. Allowed keys: {allowed}"
    E005 = "[E005] {file}:{line}: rule {rule_id}: missing required key '{key}'."
    E006 = "[E006] {file}:{line}: rule {rule_id}: duplicate id, first defined in {first}."
    E007 = "[E007] {file}:{line}: rule {rule_id}: {field} '{value}' is not allowed. Allowed values: {allowed}"
    E008 = ("[E008] {file}:{line}: {rule_id}: uses concept {name}, which no file in vocabulary/ defines. "
            "Define it there, or write the words out in quotes if they are a phrase.")
    E009 = "[E009] {file}:{line}: rule {rule_id}: regex {index} does not compile: {detail}"
    E010 = "[E010] {file}:{line}: {rule_id} includes itself: {cycle}."
    E011 = "[E011] {file}:{line}: rule {rule_id}: {field} must be {expected}, got {got}."
    E012 = "[E012] {file}: rules file is {size} bytes, over the limit of {limit} bytes."
    E013 = "[E013] {file}:{line}: YAML anchors and aliases are not allowed in rules files."
    E014 = "[E014] {file}: expected a mapping with a '{key}' list at the top level."
    E015 = "[E015] {file}:{line}: rule {rule_id}: category '{value}' does not match clause {clause} (expected '{expected}')."
    E016 = "[E016] {file}:{line}: template {rule_id}: unknown placeholder {{{name}}}. Allowed: {allowed}"
    E017 = "[E017] {file}: reply templates missing for: {missing}"
    E018 = ("[E018] {file}:{line}: template {rule_id} cannot be filled in: {detail}. Placeholders are filled "
            "with text: use them bare ({{severity}}) or with a format text accepts ({{severity:>10}}); "
            "write a brace as {{{{ or }}}}.")
    E019 = ("[E019] {file} is {kind}, not a regular file; a rules folder holds only regular .yaml files: "
            "remove it, or replace it with a copy of the file.")
    # model: training, persistence, loading
    E091 = ("[E091] {file}:{line}: language pack {language}: {problem}. A language pack file holds "
            "'language: <code>' and any of: name, tokenizer, lemmas, word_order, function_words, false_friends, sla, words, regex, examples, templates, segments.")
    E092 = ("[E092] {file}:{line}: {field}: {problem}. See docs/rules.md, \"Words that cut a request into "
            "parts\".")
    E020 = "[E020] No model at {path}. Train one with: intake train --out {dir}"
    E021 = "[E021] Model manifest {path} is missing; refusing to load {model}. Retrain with: intake train --out {dir}"
    E022 = ("[E022] Model file {path} does not match its manifest (SHA-256 {actual}, manifest "
            "says {expected}): it was changed after training; refusing to load. Retrain with: "
            "intake train --out {dir}")
    E023 = ("[E023] Model {path} was built with {library} {built}, but {installed} is installed; "
            "refusing to load. Retrain with: intake train --out {dir}")
    E024 = "[E024] Training data {path} has no rows in split '{split}'."
    E025 = "[E025] Training data {path}: column '{column}' is missing. Columns found: {found}"
    E026 = "[E026] {name} must be fitted first: call fit() before {method}()."
    E027 = "[E027] Model manifest {path} is not valid JSON or lacks '{key}'. Retrain with: intake train --out {dir}"
    E029 = ("[E029] Training data {path}: row {row} has an empty '{column}' ({count} rows do); "
            "fill the gold labels or delete those rows.")
    E028 = "[E028] Parameter {name}={value!r} is not allowed. Possible values: {allowed}"
    E086 = ("[E086] Model manifest {path}: extra model '{name}' names file {file!r}, which is not a .skops "
            "file name inside the model folder; refusing to load. Retrain with: intake train --out {dir}")
    E087 = "[E087] Model file {path} is damaged and cannot be read ({detail}). Retrain with: intake train --out {dir}"
    E088 = ("[E088] {path} is a pickle, which can run code when loaded; intake loads only model.skops "
            "files. Retrain with: intake train --out {dir}")
    E089 = ("[E089] Model file {path} holds types intake does not load ({types}); refusing to load. "
            "Retrain with: intake train --out {dir}")
    # input: one request or one batch row
    E030 = "[E030] row {row}: not valid JSON: {detail}"
    E031 = "[E031] row {row}: field 'text' is missing or empty."
    E032 = "[E032] row {row}: field '{field}' must be {expected}, got {got}."
    E033 = "[E033] row {row}: bytes are not valid {encoding}: {detail}"
    E034 = "[E034] row {row}: field '{field}' value {value!r} is not allowed. Allowed values: {allowed}"
    E035 = "[E035] row {row}: line is {size} bytes, over the limit of {limit} bytes."
    E036 = "[E036] row {row}: not a JSON object."
    E037 = "[E037] row {row}: not valid CSV (line {line}): {detail}"
    E038 = ("[E038] row {row}: not valid CSV: the quoted field opened on line {line} {end}, taking in {lines} "
            "more lines ({chars} characters); the lines after line {line} were read again as rows. Close the "
            "quote, or write a \" inside a field as \"\".")
    E039 = ("[E039] row {row}: could not be classified ({detail}); the other rows were. If every row fails "
            "like this, check the rules folder with: intake rules check")
    E040 = "[E040] Input format '{fmt}' is not supported. Use one of: {allowed}"
    E041 = "[E041] Input file {path} does not exist."
    E042 = "[E042] Input {path} is {kind}, not a file of requests; give a JSONL or CSV file, or - for standard input."
    E043 = ("[E043] Output file {path} exists; pass --overwrite to replace it, or --resume to keep its rows "
            "and classify only the requests not in it yet.")
    E044 = "[E044] Cannot write output {path}: {reason}; {state}."
    E045 = "[E045] Cannot resume {path}: {problem}; move the file away, or pass --overwrite to start over."
    E046 = "[E046] row {row}: the result cannot be written as {fmt}: {detail}."
    E047 = "[E047] Cannot read input {path}: {reason}."
    E048 = ("[E048] {what} needs the {extra} extra ({module} is not installed): "
            "pip install \"intake-classifier[{extra}]\" (in a checkout: pip install -e \".[{extra}]\")")
    E049 = ("[E049] A worker process stopped before it finished its rows ({detail}); the output is not "
            "written (with --resume, its whole rows are kept). Run again, with fewer --jobs if the machine "
            "ran out of memory.")
    # analysis: rule report, review queue, model comparison (classifier/analysis.py)
    E060 = ("[E060] rule_summary got {analysed} analysed requests but {gold} gold rows; "
            "they must be the same requests in the same order.")
    E061 = "[E061] Data {path} has no rows."
    E062 = ("[E062] Cannot compare a '{old}' model with a '{new}' model: train both on the same "
            "kind of labels (SPEC labels, or both on your own --label-col).")
    E063 = "[E063] --compare OLD_MODEL NEW_MODEL replaces --model; give one or the other."
    E064 = "[E064] No request in {path} could be classified ({failed} rows failed; first: {first})."
    # HTTP service (classifier/service.py)
    E050 = "[E050] Request body is {size} bytes, over the limit of {limit} bytes for {path}."
    E051 = "[E051] Content type '{got}' is not supported: send the body as application/json."
    E052 = "[E052] Request body is not valid JSON: {detail}"
    E053 = "[E053] {where}field '{field}': {problem}."
    E054 = "[E054] {where}field '{field}' has {size} {unit}, over the limit of {limit} {unit}."
    E055 = "[E055] Internal error while handling request {request_id}; it has been logged under that id."
    E056 = "[E056] No endpoint {method} {path}. Endpoints: {allowed}"
    E057 = "[E057] The service is busy ({pending} requests queued, limit {limit}); retry shortly."
    E058 = ("[E058] The request {part} did not arrive within {seconds} s; the connection is closed. "
            "Send the whole request without pausing.")
    E059 = "[E059] {where}the request could not be {stage}: internal error, logged under request id {request_id}."
    E070 = "[E070] Too many open connections (limit {limit}); retry shortly."
    # the desk: store, access, corrections (classifier/store.py, access.py, desk.py)
    E071 = "[E071] Cannot open the database {url}: {problem}. Set INTAKE_DATABASE_URL to a database intake can reach."
    E072 = ("[E072] {where}field 'id': a ticket needs an id (the helpdesk's ticket number), so that sending it again "
            "does not store it twice.")
    E073 = ("[E073] Ticket {id} is stored already with another text; ticket ids are unique. Send it again "
            "unchanged, or give the new request an id of its own.")
    E074 = "[E074] No ticket {id}."
    E075 = ("[E075] Clause {clause} belongs to {of}, not to {category}: pick a clause of {category}, or change "
            "the category to {of}.")
    E076 = "[E076] Missing information {items} is not required for {category} (required: {required})."
    E077 = ("[E077] Authentication required: send an API key as 'Authorization: Bearer KEY' (keys come from "
            "INTAKE_API_KEYS).")
    E078 = ("[E078] The form did not come from this desk session (CSRF token missing or wrong); reload the page "
            "and send it again.")
    E079 = "[E079] User name {name!r} is not allowed: use 1-64 letters, digits, '.', '_', '-' or '@'."
    E083 = "[E083] field '{field}': {value!r} is not allowed. Allowed values: {allowed}"
    # installed package: defaults that live in the source checkout only
    E080 = ("[E080] No --data given, and the labelled corpus data/tickets.jsonl comes with the "
            "source checkout, not the installed package: pass --data FILE.")
    E081 = ("[E081] No --out given: the bundled model lies inside the installed package and is "
            "not overwritten; pass --out DIR.")
    E082 = "[E082] {path} exists and is not empty; choose a new or empty folder."
    # warnings: the run goes on
    W090 = ("[W090] The model in {model} was trained with another vocabulary (digest {trained}) than the "
            "one in {rules}/vocabulary (digest {used}): the concepts it learnt from may no longer mean what "
            "they did (rules take effect either way). Retrain with: intake train --rules {rules} --out DIR")


class IntakeError(Exception):
    """Base of every error this package raises on purpose."""


class RulesError(IntakeError):
    """A rules or reply-template file is missing, malformed or invalid."""


class ModelError(IntakeError):
    """A model file is missing, changed, or built for other library versions."""


class InputError(IntakeError):
    """A request (or batch row) cannot be read."""

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.row = row
        self.field = field
        #: the id of the request, when it could be read although the rest could not
        self.request_id = request_id
