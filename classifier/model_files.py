"""Save and load a trained model with its manifest, refusing anything suspicious.

Beside ``model.joblib`` lies ``manifest.json``: library versions, label sets,
SHA-256 of the training data and of the model file, the training date and the
evaluation figures. Loading checks the hash *before* unpickling (a pickle runs
code when loaded) and refuses a model built with another major.minor version of
scikit-learn or spaCy, saying what happened and which command fixes it.
"""
from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

import joblib

from .dataset import file_sha256
from .errors import Errors, ModelError
from .locations import bundled, model_source

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
#: The bundled model (package data when installed, ``models/`` in a checkout).
DEFAULT_MODEL_DIR = bundled("models")
#: Libraries whose major.minor version must match between training and loading.
CHECKED_LIBRARIES = ("scikit-learn", "spacy")


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {name: version(name) for name in ("scikit-learn", "spacy", "numpy", "scipy", "joblib")}
    out["python"] = platform.python_version()
    return out


def _major_minor(v: str) -> str:
    return ".".join(v.split(".")[:2])


def save_model(model: Any, out_dir: str | Path, manifest: dict[str, Any],
               extra_models: dict[str, Any] | None = None) -> Path:
    """Write the model and its manifest (the model's hash is added to the manifest).

    ``extra_models`` (name -> model) are saved beside it as ``<name>.joblib`` with
    their own hashes, for evaluation (the text-only ablation model)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    joblib.dump(model, path, compress=3)
    extras = {}
    for name, extra in (extra_models or {}).items():
        extra_path = out / f"{name}.joblib"
        joblib.dump(extra, extra_path, compress=3)
        extras[name] = {"file": extra_path.name, "sha256": file_sha256(extra_path)}
    full = {
        "format": 1,
        "model_file": MODEL_FILE,
        "model_sha256": file_sha256(path),
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


def load_model(model_dir: str | Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Verify, then unpickle. Returns (model, manifest)."""
    d = model_source(model_dir).path
    manifest = read_manifest(d)
    model_path = d / MODEL_FILE
    actual = file_sha256(model_path)
    if actual != manifest["model_sha256"]:
        raise ModelError(Errors.E022.format(path=model_path, actual=actual[:12], expected=str(manifest["model_sha256"])[:12], dir=d))
    installed = library_versions()
    for lib in CHECKED_LIBRARIES:
        built = str(manifest["libraries"].get(lib, "unknown"))
        if _major_minor(built) != _major_minor(installed[lib]):
            raise ModelError(Errors.E023.format(path=model_path, library=lib, built=built,
                                                installed=f"{lib} {installed[lib]}", dir=d))
    return joblib.load(model_path), manifest


def load_extra_model(model_dir: str | Path | None, name: str) -> Any | None:
    """An extra model saved beside the main one (None if the manifest lists none),
    verified like the main model: manifest, hash, then library versions."""
    d = model_source(model_dir).path
    manifest = read_manifest(d)
    entry = manifest.get("extra_models", {}).get(name)
    if entry is None:
        return None
    path = d / entry["file"]
    if not path.exists():
        raise ModelError(Errors.E020.format(path=path, dir=d))
    actual = file_sha256(path)
    if actual != entry["sha256"]:
        raise ModelError(Errors.E022.format(path=path, actual=actual[:12], expected=str(entry["sha256"])[:12], dir=d))
    load_model(d)  # the library-version checks
    return joblib.load(path)
