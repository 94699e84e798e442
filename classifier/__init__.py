"""intake: pre-screen support requests against the Bitrix24 SLA.

``Classifier.load()`` gives the bundled model and rules; see README.md.
"""
from __future__ import annotations

__all__ = ["Classifier", "Request", "Result"]
__version__ = "0.2.0"


def __getattr__(name: str):
    # Lazy, so `import classifier.rules` does not pull in spaCy and scikit-learn.
    if name == "Classifier":
        from .classify import Classifier
        return Classifier
    if name == "Request":
        from .request import Request
        return Request
    if name == "Result":
        from .result import Result
        return Result
    raise AttributeError(f"module 'classifier' has no attribute {name!r}")
