import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from helpers.profiles import examples  # pytest puts tests/ on sys.path

from tfbertopt.data import TASKS
from tfbertopt.metrics import (
    accuracy,
    compute_metrics,
    f1,
    matthews_corrcoef,
    pearson,
    primary_score,
    spearman,
)

SETTINGS = settings(max_examples=examples(100), deadline=None)
binary_pairs = st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 1), min_size=n, max_size=n),
    st.lists(st.integers(0, 1), min_size=n, max_size=n)))
int_pairs = st.integers(2, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-50, 50), min_size=n, max_size=n),
    st.lists(st.integers(-50, 50), min_size=n, max_size=n)))
float_pairs = st.integers(2, 40).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n),
    st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n)))


@pytest.fixture(autouse=True)
def warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ------------------------------------------------------------- known values

def test_known_values():
    assert accuracy([0, 1, 2, 1], [0, 1, 1, 1]) == 0.75
    # tp=2, fp=1, fn=2 -> 2*2 / (4 + 1 + 2)
    assert f1([1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 1, 0]) == pytest.approx(4 / 7)
    # sklearn docs example: tp=2 tn=0 fp=1 fn=1 -> -1/3
    assert matthews_corrcoef([1, 1, 1, 0], [1, 0, 1, 1]) == pytest.approx(-1 / 3)
    assert pearson([1, 2, 3], [1, 2, 3]) == 1.0
    assert pearson([1, 2, 3], [3, 2, 1]) == -1.0
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ties: ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)


def test_degenerate_cases_return_zero_without_warnings():
    assert matthews_corrcoef([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0
    assert matthews_corrcoef([1, 1, 1], [1, 1, 1]) == 0.0
    assert pearson([1.0, 2.0, 3.0], [0.1, 0.1, 0.1]) == 0.0
    assert pearson([2.0, 2.0], [1.0, 3.0]) == 0.0
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0
    assert f1([0, 0, 0], [0, 0, 0]) == 0.0
    assert pearson([5.0], [3.0]) == 0.0


@pytest.mark.parametrize("fn", [accuracy, f1, matthews_corrcoef, pearson, spearman])
def test_input_validation(fn):
    with pytest.raises(ValueError, match="differ in length"):
        fn([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="argmax"):
        fn([0, 1], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fn([0.0, 1.0], [np.nan, 1.0])
    with pytest.raises(ValueError, match="numeric"):
        fn(["a", "b"], [0, 1])
    assert fn(np.array([[0], [1], [1]]), [0, 1, 1]) == pytest.approx(1.0)


def test_f1_rejects_non_binary():
    with pytest.raises(ValueError, match="binary"):
        f1([0, 1, 2], [0, 1, 1])


# ------------------------------------------------------------ compute_metrics

@pytest.mark.parametrize("name,keys", [
    ("sst2", {"accuracy"}), ("mnli", {"accuracy"}), ("qnli", {"accuracy"}),
    ("rte", {"accuracy"}), ("mrpc", {"accuracy", "f1"}), ("qqp", {"accuracy", "f1"}),
    ("cola", {"accuracy", "matthews_corrcoef"}), ("stsb", {"pearson", "spearman"}),
])
def test_compute_metrics_keys_and_primary(name, keys):
    task = TASKS[name]
    rng = np.random.default_rng(0)
    if task.is_regression:
        labels = rng.uniform(0, 5, 50)
        preds = labels + rng.normal(0, 1, 50)
    else:
        labels = rng.integers(0, task.num_classes, 50)
        preds = np.where(rng.random(50) < 0.7, labels, rng.integers(0, task.num_classes, 50))
    metrics = compute_metrics(name, labels, preds)
    assert set(metrics) == keys and task.metric in metrics
    assert all(isinstance(v, float) for v in metrics.values())
    assert primary_score(task, labels, preds) == metrics[task.metric]


def test_compute_metrics_validates_class_ids():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        compute_metrics("mnli", [0, 1, 3], [0, 1, 2])
    with pytest.raises(ValueError, match="class ids"):
        compute_metrics("sst2", [0, 1], [0.2, 0.9])
    assert compute_metrics("sst2", [0, 1], [0.0, 1.0]) == {"accuracy": 1.0}
    with pytest.raises(ValueError, match="Unknown GLUE task"):
        compute_metrics("imdb", [0], [0])


# -------------------------------------------------------- property tests

def _reference_mcc(y, p):
    """MCC as sum-over-classes covariance of one-hot indicators."""
    classes = np.union1d(y, p)
    Y = (np.asarray(y)[:, None] == classes).astype(float)
    P = (np.asarray(p)[:, None] == classes).astype(float)
    Y -= Y.mean(0)
    P -= P.mean(0)
    cov_yp, cov_yy, cov_pp = (Y * P).sum(), (Y * Y).sum(), (P * P).sum()
    return 0.0 if cov_yy == 0 or cov_pp == 0 else cov_yp / math.sqrt(cov_yy * cov_pp)


def _reference_ranks(x):
    x = np.asarray(x)
    return np.array([(x < v).sum() + ((x == v).sum() + 1) / 2 for v in x])


@SETTINGS
@given(binary_pairs)
def test_binary_metrics_match_formulas(pair):
    y, p = map(np.array, pair)
    tp, tn = np.sum((y == 1) & (p == 1)), np.sum((y == 0) & (p == 0))
    fp, fn = np.sum((y == 0) & (p == 1)), np.sum((y == 1) & (p == 0))
    assert accuracy(y, p) == pytest.approx((tp + tn) / len(y))
    assert f1(y, p) == pytest.approx(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    denom = math.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    expected = 0.0 if denom == 0 else (tp * tn - fp * fn) / denom
    assert matthews_corrcoef(y, p) == pytest.approx(expected, abs=1e-12)


@SETTINGS
@given(st.lists(st.integers(0, 4), min_size=2, max_size=40))
def test_matthews_perfect_and_inverse(y):
    y = np.array(y)
    assume(len(np.unique(y)) > 1)
    assert matthews_corrcoef(y, y) == pytest.approx(1.0)
    if set(np.unique(y)) == {0, 1}:
        assert matthews_corrcoef(y, 1 - y) == pytest.approx(-1.0)


@SETTINGS
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 3), min_size=n, max_size=n),
    st.lists(st.integers(0, 3), min_size=n, max_size=n))))
def test_multiclass_matthews_matches_reference(pair):
    y, p = pair
    value = matthews_corrcoef(y, p)
    assert value == pytest.approx(_reference_mcc(y, p), abs=1e-9)
    assert -1.0 <= value <= 1.0


@SETTINGS
@given(float_pairs)
def test_pearson_matches_numpy_and_is_symmetric(pair):
    x, y = map(np.array, pair)
    value = pearson(x, y)
    assert -1.0 <= value <= 1.0
    assert value == pytest.approx(pearson(y, x), abs=1e-9)
    if np.ptp(x) > 1e-3 and np.ptp(y) > 1e-3:
        assert value == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-7)


@SETTINGS
@given(int_pairs)
def test_spearman_matches_rank_reference(pair):
    x, y = map(np.array, pair)
    rx, ry = _reference_ranks(x), _reference_ranks(y)
    expected = 0.0 if np.ptp(rx) == 0 or np.ptp(ry) == 0 else np.corrcoef(rx, ry)[0, 1]
    assert spearman(x, y) == pytest.approx(expected, abs=1e-9)


@SETTINGS
@given(int_pairs)
def test_spearman_invariant_to_monotone_transforms(pair):
    x, y = (np.array(v, dtype=np.float64) for v in pair)
    base = spearman(x, y)
    assert spearman(x ** 3 + 5 * x, np.exp(y / 25.0)) == pytest.approx(base, abs=1e-9)
    assert spearman(x, -y) == pytest.approx(-base, abs=1e-9)
    assert spearman(2 * x + 7, y) == pytest.approx(base, abs=1e-9)


def test_spearman_matches_scipy_if_available():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 10, 200), rng.integers(0, 10, 200) + rng.integers(0, 3, 200)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
