"""Save and load a trained model with its manifest, refusing anything suspicious.

A model is stored with skops (``model.skops``), a format that rebuilds scikit-learn
objects from their data and runs no code when loaded, unlike a pickle; only the
types skops trusts by default (scikit-learn, NumPy, SciPy) and this package's own
:data:`TRUSTED_TYPES` are rebuilt, anything else is refused. Beside the model lies
``manifest.json``: library versions, label sets, SHA-256 of the training data and of
the model file, the training date and the evaluation figures. Loading reads the file
once, checks those bytes against the manifest and loads from the same bytes, and
refuses a model built with another major.minor version of scikit-learn or spaCy,
saying what happened and which command fixes it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import platform
import re
import zipfile
from pathlib import Path
from typing import Any

import skops.io as skops_io

from .errors import Errors, ModelError
from .locations import bundled, model_source

MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
#: Version of the model folder's layout; 1 was a pickle (``model.joblib``).
FORMAT = 2
#: The bundled model (package data when installed, ``models/`` in a checkout).
DEFAULT_MODEL_DIR = bundled("models")
#: Libraries whose major.minor version must match between training and loading.
CHECKED_LIBRARIES = ("scikit-learn", "spacy")
#: Types of this package a model file may hold, beyond what skops trusts by default.
TRUSTED_TYPES = ["classifier.model.RequestModel", "classifier.model._identity"]


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {name: version(name) for name in ("scikit-learn", "spacy", "numpy", "scipy", "skops")}
    out["python"] = platform.python_version()
    return out


def _major_minor(v: str) -> str:
    return ".".join(v.split(".")[:2])


#: Where skops writes an object's memory address: as its ``__id__`` and as the name of
#: the array file that holds it.
_OBJECT_ID = re.compile(r'(?<!\\)"(__id__": |file": ")(\d+)')


def model_bytes(model: Any) -> bytes:
    """The skops file of ``model``, byte for byte the same for the same model.

    skops names objects by their memory address and stamps the zip entries with the
    time of saving; here the addresses are renumbered in order of appearance (shared
    objects keep one number) and the entries get a fixed date and order."""
    raw = zipfile.ZipFile(io.BytesIO(skops_io.dumps(model)))
    numbers: dict[str, str] = {}

    def renumber(match: re.Match) -> str:
        return '"' + match.group(1) + numbers.setdefault(match.group(2), str(len(numbers) + 1))

    entries = {"schema.json": _OBJECT_ID.sub(renumber, raw.read("schema.json").decode("utf-8")).encode("utf-8")}
    for name in raw.namelist():
        stem, dot, suffix = name.partition(".")
        if name != "schema.json":
            entries[f"{numbers[stem]}{dot}{suffix}" if stem in numbers else name] = raw.read(name)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for name in sorted(entries):
            fixed = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(fixed, entries[name])
    return out.getvalue()


def save_model(model: Any, out_dir: str | Path, manifest: dict[str, Any],
               extra_models: dict[str, Any] | None = None) -> Path:
    """Write the model and its manifest (the model's hash is added to the manifest).

    ``extra_models`` (name -> model) are saved beside it as ``<name>.skops`` with
    their own hashes, for evaluation (the text-only ablation model)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    data = model_bytes(model)
    path.write_bytes(data)
    extras = {}
    for name, extra in (extra_models or {}).items():
        extra_data = model_bytes(extra)
        (out / f"{name}.skops").write_bytes(extra_data)
        extras[name] = {"file": f"{name}.skops", "sha256": hashlib.sha256(extra_data).hexdigest()}
    full = {
        "format": FORMAT,
        "model_file": MODEL_FILE,
        "model_sha256": hashlib.sha256(data).hexdigest(),
        "trained_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "libraries": library_versions(),
        **({"extra_models": extras} if extras else {}),
        **manifest,
    }
    (out / MANIFEST_FILE).write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    d = Path(model_dir)
    path = d / MANIFEST_FILE
    model = d / MODEL_FILE
    if not model.exists():
        if (d / "model.joblib").exists():
            raise ModelError(Errors.E088.format(path=d / "model.joblib", dir=d))
        raise ModelError(Errors.E020.format(path=model, dir=d))
    if not path.exists():
        raise ModelError(Errors.E021.format(path=path, model=model, dir=d))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ModelError(Errors.E027.format(path=path, key="(valid JSON)", dir=d)) from None
    for key in ("model_sha256", "libraries"):
        if not isinstance(manifest, dict) or key not in manifest:
            raise ModelError(Errors.E027.format(path=path, key=key, dir=d))
    return manifest


def _check_versions(manifest: dict[str, Any], path: Path, d: Path) -> None:
    installed = library_versions()
    for lib in CHECKED_LIBRARIES:
        built = str(manifest["libraries"].get(lib, "unknown"))
        if _major_minor(built) != _major_minor(installed[lib]):
            raise ModelError(Errors.E023.format(path=path, library=lib, built=built,
                                                installed=f"{lib} {installed[lib]}", dir=d))


def _verified_load(path: Path, expected: Any, d: Path) -> Any:
    """Read ``path`` once, check those bytes against the manifest's hash, and rebuild
    the model from the same bytes (a file swapped after the check is never loaded)."""
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ModelError(Errors.E022.format(path=path, actual=actual[:12], expected=str(expected)[:12], dir=d))
    try:
        untrusted = sorted(set(skops_io.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
        if untrusted:
            raise ModelError(Errors.E089.format(path=path, types=", ".join(untrusted), dir=d))
        return skops_io.loads(data, trusted=TRUSTED_TYPES)
    except ModelError:
        raise
    except Exception as exc:  # a damaged archive: zipfile, JSON or skops errors
        raise ModelError(Errors.E087.format(path=path, detail=f"{type(exc).__name__}: {exc}", dir=d)) from None


def load_model(model_dir: str | Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Verify, then load. Returns (model, manifest)."""
    d = model_source(model_dir).path
    manifest = read_manifest(d)
    model_path = d / MODEL_FILE
    _check_versions(manifest, model_path, d)
    return _verified_load(model_path, manifest["model_sha256"], d), manifest


def load_extra_model(model_dir: str | Path | None, name: str) -> Any | None:
    """An extra model saved beside the main one (None if the manifest lists none),
    verified like the main model: manifest, library versions, then hash. Its file must
    be a plain file name inside the model folder."""
    d = model_source(model_dir).path
    manifest = read_manifest(d)
    entry = manifest.get("extra_models", {}).get(name)
    if entry is None:
        return None
    file = str(entry.get("file", "")) if isinstance(entry, dict) else ""
    if not file or Path(file).name != file or file in (".", "..") or not file.endswith(".skops"):
        raise ModelError(Errors.E086.format(path=d / MANIFEST_FILE, name=name, file=file, dir=d))
    path = d / file
    if not path.is_file():
        raise ModelError(Errors.E020.format(path=path, dir=d))
    _check_versions(manifest, path, d)
    return _verified_load(path, entry.get("sha256"), d)
