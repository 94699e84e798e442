"""The text model: a scikit-learn estimator over lemma n-grams and rule hits.

``RequestModel`` follows the estimator contract (parameters stored as given in
``__init__``, all work in ``fit``, learned attributes end in ``_``) so it plugs
into ``Pipeline`` and ``GridSearchCV``. It takes raw texts, request mappings,
:class:`~classifier.request.Request` objects or already-analysed requests, and
predicts one or several label columns at once (category, clause, severity):
with a 2-D ``y`` it is multi-output like ``MultiOutputClassifier``.
"""
from __future__ import annotations

import numbers
from itertools import chain, repeat
from typing import Any, Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2
from sklearn.utils.validation import check_is_fitted

from .errors import Errors
from .features import Analysed, shared_analyser
from .request import Request


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def analyse_inputs(X: Iterable[Any], rules_dir: str | None = None) -> list[Analysed]:
    """Analysed records for any accepted input form (texts, mappings, requests, analysed)."""
    items = list(X)
    todo = [i for i, x in enumerate(items) if not isinstance(x, Analysed)]
    if todo:
        reqs = [Request.from_mapping(items[i], row=i + 1) for i in todo]
        for i, analysed in zip(todo, shared_analyser(rules_dir).analyse(reqs)):
            items[i] = analysed
    return items  # type: ignore[return-value]


class RequestModel(ClassifierMixin, BaseEstimator):
    """Logistic regression over TF-IDF of lemma n-grams, concept features and,
    optionally, character n-grams; one classifier per output column.

    Parameters
    ----------
    C : inverse regularisation strength of the logistic regressions.
    ngram_max : longest lemma n-gram (1-3).
    min_df : a feature must occur in at least this many training requests.
    max_features : keep at most this many lemma features (keeps the model small).
    concept_features : add one feature per vocabulary concept the request names
        (``concept=INSTALL``): words of any language that mean one thing count as one.
    char_ngrams : (min, max) character n-gram lengths, or None for none.
    class_weight : passed to LogisticRegression ("balanced" or None).
    rules_dir : rules folder used to analyse raw text (None: the bundled rules).
    """

    def __init__(self, *, C: float = 8.0, ngram_max: int = 2, min_df: int = 2,
                 max_features: int | None = 20000, concept_features: bool = True,
                 char_ngrams: tuple[int, int] | None = None, class_weight: str | None = "balanced",
                 rules_dir: str | None = None) -> None:
        self.C = C
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.max_features = max_features
        self.concept_features = concept_features
        self.char_ngrams = char_ngrams
        self.class_weight = class_weight
        self.rules_dir = rules_dir

    # -- validation -------------------------------------------------------------
    def _check_params(self) -> None:
        if isinstance(self.C, bool) or not isinstance(self.C, numbers.Real) or not self.C > 0:
            raise ValueError(Errors.E028.format(name="C", value=self.C, allowed="a number > 0"))
        if self.ngram_max not in (1, 2, 3):
            raise ValueError(Errors.E028.format(name="ngram_max", value=self.ngram_max, allowed="[1, 2, 3]"))
        if self.class_weight not in (None, "balanced"):
            raise ValueError(Errors.E028.format(name="class_weight", value=self.class_weight,
                                                allowed="[None, 'balanced']"))
        if self.char_ngrams is not None and (len(self.char_ngrams) != 2 or not 1 <= self.char_ngrams[0] <= self.char_ngrams[1] <= 8):
            raise ValueError(Errors.E028.format(name="char_ngrams", value=self.char_ngrams,
                                                allowed="None or (min, max) with 1 <= min <= max <= 8"))

    # -- features ---------------------------------------------------------------
    def _docs(self, analysed: Sequence[Analysed]) -> list[list[str]]:
        return [a.features(self.ngram_max, self.concept_features) for a in analysed]

    def _transform(self, analysed: Sequence[Analysed]):
        X = _tfidf_transform(self.vectorizer_, self._docs(analysed))
        if self.char_vectorizer_ is not None:
            X = sp.hstack([X, self.char_vectorizer_.transform([" ".join(a.tokens) for a in analysed])], format="csr")
        return X

    # -- estimator API ----------------------------------------------------------
    def fit(self, X: Iterable[Any], y: Any) -> "RequestModel":
        """Fit on requests ``X`` and labels ``y`` (1-D, or 2-D / DataFrame for several outputs)."""
        self._check_params()
        analysed = analyse_inputs(X, self.rules_dir)
        names = list(y.columns) if hasattr(y, "columns") else None
        Y = np.asarray(y, dtype=object)
        self.n_outputs_ = 1 if Y.ndim == 1 else Y.shape[1]
        self.target_names_ = names
        Y2 = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        if Y2.shape[0] != len(analysed):
            raise ValueError(f"X has {len(analysed)} requests but y has {Y2.shape[0]} rows.")
        self.vectorizer_ = TfidfVectorizer(analyzer=_identity, min_df=self.min_df, max_features=self.max_features,
                                           sublinear_tf=True, dtype=np.float32)
        Xv = self.vectorizer_.fit_transform(self._docs(analysed))
        self.char_vectorizer_ = None
        if self.char_ngrams is not None:
            self.char_vectorizer_ = TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(self.char_ngrams),
                                                    min_df=self.min_df, max_features=self.max_features,
                                                    sublinear_tf=True, dtype=np.float32)
            Xc = self.char_vectorizer_.fit_transform([" ".join(a.tokens) for a in analysed])
            Xv = sp.hstack([Xv, Xc], format="csr")
        for vec in (self.vectorizer_, self.char_vectorizer_):
            if vec is not None and hasattr(vec, "stop_words_"):
                vec.stop_words_ = None  # terms cut by min_df: not needed to predict, large to store
        self.estimators_ = []
        for j in range(self.n_outputs_):
            clf = LogisticRegression(C=self.C, max_iter=3000, class_weight=self.class_weight)
            clf.fit(Xv, Y2[:, j].astype(str))
            clf.coef_ = clf.coef_.astype(np.float32)
            clf.intercept_ = clf.intercept_.astype(np.float32)
            self.estimators_.append(clf)
        classes = [clf.classes_ for clf in self.estimators_]
        self.classes_ = classes[0] if self.n_outputs_ == 1 else classes
        return self

    def predict_proba(self, X: Iterable[Any]):
        """Class probabilities: one array, or a list of arrays for several outputs."""
        check_is_fitted(self, "estimators_", msg=Errors.E026.format(name=type(self).__name__, method="predict_proba"))
        Xv = self._transform(analyse_inputs(X, self.rules_dir))
        probas = [_predict_proba(clf, Xv) for clf in self.estimators_]
        return probas[0] if self.n_outputs_ == 1 else probas

    def predict(self, X: Iterable[Any]):
        """Most probable label(s): shape (n,) or (n, n_outputs)."""
        check_is_fitted(self, "estimators_", msg=Errors.E026.format(name=type(self).__name__, method="predict"))
        probas = self.predict_proba(X)
        if self.n_outputs_ == 1:
            return self.classes_[np.argmax(probas, axis=1)]
        return np.column_stack([c[np.argmax(p, axis=1)] for c, p in zip(self.classes_, probas)])

    def label_probabilities(self, X: Iterable[Any]) -> list[dict[str, dict[str, float]]]:
        """Per request, ``{output name: {label: probability}}`` (names from the fitted
        DataFrame's columns, e.g. category/clause/severity): what the decisions read."""
        probas = self.predict_proba(X)
        probas = probas if isinstance(probas, list) else [probas]
        classes = self.classes_ if isinstance(self.classes_, list) else [self.classes_]
        names = self.target_names_ or (["category"] if self.n_outputs_ == 1
                                       else [f"output{j}" for j in range(self.n_outputs_)])
        labels = [c.tolist() for c in classes]
        rows = [p.tolist() for p in probas]  # one conversion per output, not one per request
        return [{n: dict(zip(lb, r[i])) for n, lb, r in zip(names, labels, rows)}
                for i in range(probas[0].shape[0])]

    def score(self, X: Iterable[Any], y: Any, sample_weight=None) -> float:
        """Mean accuracy, averaged over the outputs."""
        pred = self.predict(X)
        Y = np.asarray(y, dtype=object)
        if Y.ndim == 1:
            return float(np.mean(pred == Y.astype(str)))
        return float(np.mean([np.mean(pred[:, j] == Y[:, j].astype(str)) for j in range(Y.shape[1])]))


def _predict_proba(clf: Any, X: Any) -> np.ndarray:
    """``clf.predict_proba(X)``; for a LogisticRegression the same arithmetic without its
    per-call input checks, which cost more than the product itself on the small batches
    a service classifies (X is the sparse matrix this model just built)."""
    if type(clf) is not LogisticRegression:
        return clf.predict_proba(X)
    scores = X @ clf.coef_.T + clf.intercept_  # what safe_sparse_dot does for a sparse X
    if len(clf.classes_) <= 2:
        p = expit(scores.ravel())
        return np.vstack([1 - p, p]).T
    return _softmax(scores)


def _softmax(scores: np.ndarray) -> np.ndarray:
    """``sklearn.utils.extmath.softmax(scores, copy=False)`` for a numpy array, in place:
    the same operations in the same order (so the same bits), without its array-API
    dispatch (~7 µs a call, and a batch makes one call per output)."""
    scores -= scores.max(axis=1).reshape(-1, 1)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1).reshape(-1, 1)
    return scores


def _tfidf_transform(vec: TfidfVectorizer, docs: list[list[str]]):
    """``vec.transform(docs)`` for this model's word vectorizer (features given as lists,
    sublinear tf, idf, l2 rows), without sklearn's per-call input checks, which cost more
    than the counting on the small batches a service classifies. Other settings go
    through sklearn."""
    if not (vec.analyzer is _identity and vec.sublinear_tf and vec.norm == "l2" and vec.use_idf
            and not vec.binary):
        return vec.transform(docs)
    vocab = vec.vocabulary_
    n_features = len(vocab)
    ids = [list(map(vocab.get, doc, repeat(-1))) for doc in docs]  # -1: not in the vocabulary
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    columns = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    # one sort of (row, column) keys over the batch counts every row's features at once
    keys = np.repeat(np.arange(len(docs), dtype=np.int64) * n_features, lengths) + columns
    keys, counts = np.unique(keys[columns >= 0], return_counts=True)
    rows, columns = np.divmod(keys, n_features)
    indptr = np.zeros(len(docs) + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=len(docs)), out=indptr[1:])
    X = sp.csr_matrix((np.log(counts, dtype=vec.dtype) + 1, columns.astype(np.int32), indptr),
                      shape=(len(docs), n_features))
    X.data *= vec.idf_[X.indices]
    inplace_csr_row_normalize_l2(X)
    return X
