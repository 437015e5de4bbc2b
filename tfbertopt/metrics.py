"""GLUE evaluation metrics in pure numpy (no sklearn/scipy).

Degenerate inputs never produce warnings or NaN: a constant prediction gives
Matthews 0.0, an undefined correlation gives 0.0, an F1 with no positives in
labels or predictions gives 0.0.

>>> compute_metrics("mrpc", [1, 0, 1, 1], [1, 0, 0, 1])
{'accuracy': 0.75, 'f1': 0.8}
"""

from __future__ import annotations

import numpy as np

from tfbertopt.data.tasks import GlueTask, get_task

__all__ = ["accuracy", "f1", "matthews_corrcoef", "pearson", "spearman",
           "compute_metrics", "primary_score"]


def _as_1d(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or shape (n, 1)), got shape "
                         f"{arr.shape}; for logits/probabilities pass "
                         "argmax(axis=-1)")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _pair(labels, predictions) -> tuple[np.ndarray, np.ndarray]:
    y, p = _as_1d(labels, "labels"), _as_1d(predictions, "predictions")
    if len(y) != len(p):
        raise ValueError(f"labels and predictions differ in length: "
                         f"{len(y)} vs {len(p)}")
    if len(y) == 0:
        raise ValueError("labels and predictions are empty")
    return y, p


def accuracy(labels, predictions) -> float:
    """Fraction of exact matches.

    >>> accuracy([0, 1, 2, 1], [0, 1, 1, 1])
    0.75
    """
    y, p = _pair(labels, predictions)
    return float(np.mean(y == p))


def f1(labels, predictions) -> float:
    """Binary F1 of the positive class 1 (0.0 when it is never seen or predicted).

    >>> round(f1([1, 1, 0, 0, 1], [1, 0, 1, 0, 1]), 4)  # tp=2 fp=1 fn=1
    0.6667
    """
    y, p = _pair(labels, predictions)
    for name, arr in (("labels", y), ("predictions", p)):
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"f1 is binary: {name} must be 0/1, got values "
                             f"{np.unique(arr)[:10].tolist()}")
    tp = float(np.sum((y == 1) & (p == 1)))
    fp = float(np.sum((y == 0) & (p == 1)))
    fn = float(np.sum((y == 1) & (p == 0)))
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2 * tp / denom


def matthews_corrcoef(labels, predictions) -> float:
    """Multi-class Matthews correlation (0.0 if labels or predictions are constant).

    >>> matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0])
    -1.0
    """
    y, p = _pair(labels, predictions)
    classes, inverse = np.unique(np.concatenate([y, p]), return_inverse=True)
    k, n = len(classes), len(y)
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (inverse[:n], inverse[n:]), 1.0)
    t_sum, p_sum = confusion.sum(axis=1), confusion.sum(axis=0)
    total = float(n)
    cov_tp = np.trace(confusion) * total - t_sum @ p_sum
    cov_pp = total * total - p_sum @ p_sum
    cov_tt = total * total - t_sum @ t_sum
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return float(np.clip(cov_tp / np.sqrt(cov_tt * cov_pp), -1.0, 1.0))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64), y.astype(np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    with np.errstate(all="ignore"):
        xc, yc = x - x.mean(), y - y.mean()
        xc, yc = xc / np.abs(xc).max(), yc / np.abs(yc).max()  # avoid overflow
        denom = np.sqrt(np.dot(xc, xc) * np.dot(yc, yc))
        r = np.dot(xc, yc) / denom
    return float(np.clip(r, -1.0, 1.0)) if np.isfinite(r) and denom > 0 else 0.0


def pearson(labels, predictions) -> float:
    """Pearson correlation (0.0 when undefined, e.g. constant predictions).

    >>> pearson([1.0, 2.0, 3.0], [2.0, 4.0, 6.5]) > 0.99
    True
    """
    y, p = _pair(labels, predictions)
    return _pearson(y, p)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; ties get the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    starts = np.r_[True, sorted_vals[1:] != sorted_vals[:-1]]
    group = np.cumsum(starts) - 1
    bounds = np.r_[np.flatnonzero(starts), len(values)]
    mean_rank = (bounds[:-1] + 1 + bounds[1:]) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def spearman(labels, predictions) -> float:
    """Spearman rank correlation with average ranks for ties.

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 1000])
    1.0
    """
    y, p = _pair(labels, predictions)
    return _pearson(_average_ranks(y), _average_ranks(p))


def _class_ids(values: np.ndarray, task: GlueTask, name: str) -> np.ndarray:
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        raise ValueError(f"{name} for task {task.name!r} must be class ids, got "
                         "non-integer floats; pass argmax of the logits")
    ids = values.astype(np.int64)
    bad = (ids < 0) | (ids >= task.num_classes)
    if np.any(bad):
        raise ValueError(f"{name} for task {task.name!r} must lie in "
                         f"[0, {task.num_classes}), got {ids[bad][:5].tolist()}")
    return ids


def compute_metrics(task, labels, predictions) -> dict[str, float]:
    """All metrics that apply to ``task`` (class ids, or scores for STS-B).

    >>> m = compute_metrics("stsb", [0.0, 2.5, 5.0], [0.5, 2.0, 4.0])
    >>> {k: round(v, 4) for k, v in m.items()}
    {'pearson': 0.9966, 'spearman': 1.0}
    """
    task = get_task(task)
    y, p = _pair(labels, predictions)
    if task.is_regression:
        return {"pearson": _pearson(y, p),
                "spearman": _pearson(_average_ranks(y), _average_ranks(p))}
    y, p = _class_ids(y, task, "labels"), _class_ids(p, task, "predictions")
    out = {"accuracy": accuracy(y, p)}
    if task.metric == "f1":
        out["f1"] = f1(y, p)
    if task.metric == "matthews_corrcoef":
        out["matthews_corrcoef"] = matthews_corrcoef(y, p)
    return out


def primary_score(task, labels, predictions) -> float:
    """The task's headline metric (``task.metric``).

    >>> primary_score("cola", [0, 1, 1, 0], [0, 1, 1, 0])
    1.0
    """
    task = get_task(task)
    return compute_metrics(task, labels, predictions)[task.metric]
