"""The estimator contract of RequestModel.

``check_estimator`` skips estimators that take raw text, so the contract is
checked here: parameters stored as given, validation only in ``fit``, ``clone`` and
``get_params``/``set_params``, learned attributes ending in ``_``, NotFittedError
before fit, single- and multi-output shapes, Pipeline and GridSearchCV.
"""
from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from classifier import dataset
from classifier.features import Analysed
from classifier.model import RequestModel, analyse_inputs
from classifier.request import Request
from classifier.training import _requests

CATEGORIES = ["development", "general", "installation", "performance"]
TARGETS = ["category", "clause", "severity"]
#: New requests, written like customers write them, one per category.
NEW_REQUESTS = [
    ("How do I call crm.deal.add from my PHP script through the REST API? I get the webhook "
     "response but the deal is not created", "development"),
    ("Is it possible to change the licence from Standard to Professional in the middle of the "
     "billing period, and what happens to unused months?", "general"),
    ("The installation wizard stops at the database step with 'cannot connect to MySQL'. "
     "We are installing the Business edition on a fresh Debian server.", "installation"),
    ("Our portal became very slow after we added 200 employees, every page takes 10 seconds "
     "to open. Which caching settings should we enable?", "performance"),
]


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    """120 train rows of data/tickets.jsonl: the first 30 of each of four categories."""
    df = dataset.read_labelled(dataset.DEFAULT_DATA)
    df = df[df["split"] == "train"]
    return pd.concat([df[df["category"] == c].head(30) for c in CATEGORIES], ignore_index=True)


@pytest.fixture(scope="module")
def analysed(sample: pd.DataFrame) -> list[Analysed]:
    return analyse_inputs(_requests(sample))


@pytest.fixture(scope="module")
def fitted_single(analysed, sample) -> RequestModel:
    return RequestModel().fit(analysed, sample["category"])


@pytest.fixture(scope="module")
def fitted_multi(analysed, sample) -> RequestModel:
    return RequestModel().fit(analysed, sample[TARGETS])


def params_of(cls) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def test_init_stores_params_unchanged_and_validates_nothing():
    # nonsense values are stored as given: validation belongs to fit
    model = RequestModel(C=-1, ngram_max=7, char_ngrams=(5, 2), class_weight="auto", min_df=0)
    assert model.get_params()["C"] == -1
    assert model.get_params()["ngram_max"] == 7
    assert model.get_params()["char_ngrams"] == (5, 2)
    assert model.get_params()["class_weight"] == "auto"
    assert set(vars(model)) == set(params_of(RequestModel))


def test_default_params_are_unchanged():
    assert RequestModel().get_params() == {"C": 8.0, "ngram_max": 2, "min_df": 2, "max_features": 20000,
                                           "concept_features": True, "char_ngrams": None,
                                           "class_weight": "balanced", "rules_dir": None}


@pytest.mark.parametrize("params, message", [
    ({"C": -1}, "[E028] Parameter C=-1 is not allowed. Possible values: a number > 0"),
    ({"C": 0}, "[E028] Parameter C=0 is not allowed. Possible values: a number > 0"),
    ({"C": "8"}, "[E028] Parameter C='8' is not allowed. Possible values: a number > 0"),
    ({"C": True}, "[E028] Parameter C=True is not allowed. Possible values: a number > 0"),
    ({"ngram_max": 4}, "[E028] Parameter ngram_max=4 is not allowed. Possible values: [1, 2, 3]"),
    ({"class_weight": "auto"},
     "[E028] Parameter class_weight='auto' is not allowed. Possible values: [None, 'balanced']"),
    ({"char_ngrams": (5, 2)}, "[E028] Parameter char_ngrams=(5, 2) is not allowed. "
                              "Possible values: None or (min, max) with 1 <= min <= max <= 8"),
])
def test_bad_params_are_rejected_in_fit_with_exact_message(params, message):
    model = RequestModel(**params)  # accepted here ...
    with pytest.raises(ValueError) as exc:
        model.fit(["the portal is down", "how do I install it"], ["product_error", "installation"])
    assert str(exc.value) == message  # ... refused in fit
    assert not hasattr(model, "estimators_")


def test_numpy_numbers_are_valid_C(analysed, sample):
    # GridSearchCV grids are often numpy arrays (np.logspace, np.arange)
    model = RequestModel(C=np.int64(4)).fit(analysed, sample["category"])
    assert model.estimators_[0].C == 4


def test_clone_keeps_params_and_drops_learned_state(fitted_single):
    model = RequestModel(C=2.5, ngram_max=1, char_ngrams=(2, 4), concept_features=False, class_weight=None)
    copy = clone(model)
    assert copy is not model
    assert copy.get_params() == model.get_params()
    fresh = clone(fitted_single)
    assert fresh.get_params() == fitted_single.get_params()
    assert not hasattr(fresh, "estimators_") and not hasattr(fresh, "classes_")


def test_get_params_set_params_round_trip():
    model = RequestModel()
    assert sorted(model.get_params()) == sorted(params_of(RequestModel))
    new = {"C": 0.5, "ngram_max": 3, "min_df": 1, "max_features": None, "concept_features": False,
           "char_ngrams": (3, 5), "class_weight": None, "rules_dir": "rules"}
    assert model.set_params(**new) is model
    assert model.get_params() == new
    assert RequestModel(**model.get_params()).get_params() == new


def test_fit_returns_self_and_learned_attributes_end_in_underscore(analysed, sample):
    model = RequestModel()
    assert model.fit(analysed, sample["category"]) is model
    learned = set(vars(model)) - set(params_of(RequestModel))
    assert {"classes_", "estimators_", "vectorizer_", "n_outputs_"} <= learned
    assert all(name.endswith("_") and not name.startswith("_") for name in learned)
    assert model.C == 8.0 and model.char_ngrams is None  # params untouched by fit


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_not_fitted_error_before_fit(method):
    with pytest.raises(NotFittedError) as exc:
        getattr(RequestModel(), method)(["Our portal shows a white page since this morning"])
    assert str(exc.value) == f"[E026] RequestModel must be fitted first: call fit() before {method}()."


def test_y_length_must_match_X():
    with pytest.raises(ValueError) as exc:
        RequestModel().fit(["the portal is down", "how do I install it", "slow pages"], ["a", "b"])
    assert str(exc.value) == "X has 3 requests but y has 2 rows."


def test_single_output_shapes_and_labels(fitted_single):
    texts = [t for t, _ in NEW_REQUESTS]
    assert fitted_single.n_outputs_ == 1
    assert list(fitted_single.classes_) == CATEGORIES
    pred = fitted_single.predict(texts)
    proba = fitted_single.predict_proba(texts)
    assert pred.shape == (4,)
    assert proba.shape == (4, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert list(pred) == list(fitted_single.classes_[proba.argmax(axis=1)])
    assert list(pred) == [c for _, c in NEW_REQUESTS]


def test_multi_output_shapes_and_labels(fitted_multi, sample):
    texts = [t for t, _ in NEW_REQUESTS]
    assert fitted_multi.n_outputs_ == 3
    assert fitted_multi.target_names_ == TARGETS
    assert isinstance(fitted_multi.classes_, list) and len(fitted_multi.classes_) == 3
    for name, classes in zip(TARGETS, fitted_multi.classes_):
        assert list(classes) == sorted(sample[name].unique())
    pred = fitted_multi.predict(texts)
    proba = fitted_multi.predict_proba(texts)
    assert pred.shape == (4, 3)
    assert [p.shape for p in proba] == [(4, len(c)) for c in fitted_multi.classes_]
    for j, (classes, p) in enumerate(zip(fitted_multi.classes_, proba)):
        assert list(pred[:, j]) == list(classes[p.argmax(axis=1)])
    assert list(pred[:, 0]) == [c for _, c in NEW_REQUESTS]
    # every predicted clause is one the model was trained on, and severities are SPEC levels
    assert set(pred[:, 1]) <= set(sample["clause"]) and set(pred[:, 2]) <= {"critical", "high", "medium", "low"}


def test_score_is_mean_accuracy(fitted_single, fitted_multi):
    texts = [t for t, _ in NEW_REQUESTS]
    gold = [c for _, c in NEW_REQUESTS]
    assert fitted_single.score(texts, gold) == 1.0
    assert fitted_single.score(texts, list(reversed(gold))) == 0.0
    wrong = pd.DataFrame({"category": gold, "clause": ["none"] * 4, "severity": ["none"] * 4})
    assert fitted_multi.score(texts, wrong) == pytest.approx(1 / 3)


def texts_of(records: list[dict]) -> list[str]:
    """Pipeline step: the text of each request mapping."""
    return [r["text"] for r in records]


def test_pipeline_and_grid_search(sample):
    records = sample[["text", "subject"]].to_dict("records")
    pipe = Pipeline([("texts", FunctionTransformer(texts_of)), ("model", RequestModel())])
    search = GridSearchCV(pipe, {"model__C": [1e-4, 8.0]}, cv=2).fit(records, sample["category"])
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert search.best_params_ == {"model__C": 8.0}  # C reaches the model: a near-zero C underfits
    assert search.best_score_ > 0.8
    best = search.best_estimator_
    assert isinstance(best, Pipeline) and best.named_steps["model"].C == 8.0
    pred = search.predict([{"text": t} for t, _ in NEW_REQUESTS])
    assert list(pred) == [c for _, c in NEW_REQUESTS]


def test_concept_features_add_the_concepts_a_request_names(analysed, sample):
    named = {c for a in analysed for c in a.concepts}
    with_concepts = RequestModel(min_df=1).fit(analysed, sample["category"])
    without = RequestModel(min_df=1, concept_features=False).fit(analysed, sample["category"])
    concept_feats = {f for f in with_concepts.vectorizer_.vocabulary_ if f.startswith("concept=")}
    assert named and concept_feats == {f"concept={name}" for name in named}
    assert not any(f.startswith("concept=") for f in without.vectorizer_.vocabulary_)
    # rules act in the decision, not as features: no feature names a rule
    assert not any(f.startswith("rule=") for f in with_concepts.vectorizer_.vocabulary_)
    # a request's row carries its own concept features
    first = next(a for a in analysed if a.concepts)
    row = with_concepts._transform([first])
    vocab = with_concepts.vectorizer_.vocabulary_
    assert all(row[0, vocab[f"concept={name}"]] > 0 for name in first.concepts)


def test_char_ngrams_add_features(analysed, sample):
    plain = RequestModel().fit(analysed, sample["category"])
    chars = RequestModel(char_ngrams=(2, 4)).fit(analysed, sample["category"])
    assert plain.char_vectorizer_ is None
    n_plain = plain._transform(analysed[:2]).shape[1]
    assert chars._transform(analysed[:2]).shape[1] == n_plain + len(chars.char_vectorizer_.vocabulary_)
    assert list(chars.predict([t for t, _ in NEW_REQUESTS[:2]])) == [c for _, c in NEW_REQUESTS[:2]]


def test_str_dict_request_and_analysed_inputs_agree(fitted_multi):
    text = NEW_REQUESTS[2][0]
    forms = [[text], [{"text": text}], [Request(text=text)], analyse_inputs([text])]
    preds = [fitted_multi.predict(x) for x in forms]
    probas = [fitted_multi.predict_proba(x) for x in forms]
    for pred, proba in zip(preds[1:], probas[1:]):
        np.testing.assert_array_equal(pred, preds[0])
        for p, p0 in zip(proba, probas[0]):
            np.testing.assert_array_equal(p, p0)
    # the subject is part of what the model reads
    with_subject = fitted_multi.predict_proba([{"text": text, "subject": "slow CRM pages, caching"}])
    assert not np.array_equal(with_subject[0], probas[0][0])


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_probabilities_without_sklearn_input_checks_equal_predict_proba(n_classes: int) -> None:
    """The model computes LogisticRegression probabilities itself (sklearn's per-call
    checks cost more than the product on small batches); they must be sklearn's."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    from classifier.model import _predict_proba

    rng = np.random.default_rng(0)
    X = sp.random(200, 50, density=0.1, format="csr", random_state=0, dtype=np.float32)
    y = rng.integers(0, n_classes, 200)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    clf.coef_ = clf.coef_.astype(np.float32)  # as the saved model keeps them
    np.testing.assert_allclose(_predict_proba(clf, X), clf.predict_proba(X), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_gives_sklearn_softmax_bit_for_bit(dtype) -> None:
    """The local softmax skips sklearn's array-API dispatch; its numbers must be the very
    same bits, so results stay byte-identical (wide and tied scores included)."""
    from sklearn.utils.extmath import softmax

    from classifier.model import _softmax

    rng = np.random.default_rng(3)
    scores = (rng.normal(size=(300, 42)) * rng.choice([0.01, 1.0, 30.0], size=(300, 1))).astype(dtype)
    scores[0] = 1.5  # every class tied
    expected = softmax(scores.copy(), copy=False)
    got = _softmax(scores.copy())
    assert got.dtype == expected.dtype
    assert np.array_equal(got, expected)

def test_tfidf_without_sklearn_input_checks_equals_transform() -> None:
    """The model builds its tf-idf rows itself (same reason); they must be sklearn's,
    for empty requests and words it never saw too."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from classifier.model import _identity, _tfidf_transform

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    docs = [list(rng.choice(words, size=rng.integers(0, 40))) for _ in range(200)]
    vec = TfidfVectorizer(analyzer=_identity, min_df=2, sublinear_tf=True, dtype=np.float32).fit(docs)
    new = docs[:50] + [[], ["never-seen"], ["w1", "w1", "w1", "never-seen"]]
    expected, got = vec.transform(new), _tfidf_transform(vec, new)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert (got != expected).nnz == 0
