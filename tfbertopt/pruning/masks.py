"""Mask computation: magnitude (per tensor or global) and N:M. Pure NumPy, run on the host every `frequency` steps.

Masks are exact: for sparsity s, exactly round(s * size) weights are zeroed (ties broken by position, so the result
is deterministic), and an N:M mask keeps exactly N of every M consecutive weights along the chosen axis.

Example:

>>> import numpy as np
>>> from tfbertopt.pruning.masks import magnitude_mask, nm_mask, is_nm_sparse
>>> w = np.array([[0.1, -3.0], [2.0, -0.5]])
>>> magnitude_mask(w, 0.5)
array([[0., 1.],
       [1., 0.]], dtype=float32)
>>> m = nm_mask(np.arange(1, 9, dtype=float).reshape(4, 2), 2, 4, axis=0)
>>> m[:, 0], is_nm_sparse(m, 2, 4, axis=0)
(array([0., 0., 1., 1.], dtype=float32), True)
"""

from __future__ import annotations

import numpy as np


class InvalidWeightsError(ValueError):
    """Weights containing NaN or Inf: a magnitude ranking of them means nothing."""


def _check_finite(w: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(w)):
        bad = int(np.size(w) - np.isfinite(w).sum())
        raise InvalidWeightsError(f"{name}: {bad} NaN/Inf values; cannot rank weights by magnitude "
                                  f"(did training diverge?)")


def _check_sparsity(sparsity: float) -> float:
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return float(sparsity)


def magnitude_mask(w, sparsity: float, name: str = "weights") -> np.ndarray:
    """Mask (float32 0/1, same shape) zeroing exactly round(sparsity * size) smallest-|w| entries."""
    w = np.asarray(w, dtype=np.float32)
    _check_finite(w, name)
    k = int(round(_check_sparsity(sparsity) * w.size))
    mask = np.ones(w.size, np.float32)
    if k:
        order = np.argsort(np.abs(w).ravel(), kind="stable")
        mask[order[:k]] = 0.0
    return mask.reshape(w.shape)


def global_magnitude_masks(weights: list, sparsity: float, names: list[str] | None = None) -> list[np.ndarray]:
    """Masks for several tensors under one threshold: exactly round(sparsity * total) zeros across all of them."""
    names = names or [f"weights[{i}]" for i in range(len(weights))]
    arrays = [np.asarray(w, dtype=np.float32) for w in weights]
    for w, name in zip(arrays, names):
        _check_finite(w, name)
    flat = np.concatenate([np.abs(w).ravel() for w in arrays])
    k = int(round(_check_sparsity(sparsity) * flat.size))
    mask = np.ones(flat.size, np.float32)
    if k:
        mask[np.argsort(flat, kind="stable")[:k]] = 0.0
    out, start = [], 0
    for w in arrays:
        out.append(mask[start:start + w.size].reshape(w.shape))
        start += w.size
    return out


def nm_mask(w, n: int, m: int, axis: int = 0, name: str = "weights") -> np.ndarray:
    """Keeps the `n` largest-|w| of every `m` consecutive entries along `axis`.

    For a Dense kernel (in, out), axis 0 is the input-channel axis, the one LiteRT's FULLY_CONNECTED reduces over
    (its weights are stored (out, in) with `in` innermost), matching TFMOT's `sparsity_m_by_n`.
    """
    if not (isinstance(n, int) and isinstance(m, int) and 0 < n < m):
        raise ValueError(f"N:M sparsity needs integers 0 < N < M, got {n}:{m}")
    w = np.asarray(w, dtype=np.float32)
    _check_finite(w, name)
    axis = axis % w.ndim
    if w.shape[axis] % m:
        raise ValueError(f"{name}: axis {axis} has {w.shape[axis]} entries, not a multiple of M={m}")
    moved = np.moveaxis(w, axis, -1)
    groups = np.abs(moved).reshape(-1, m)
    order = np.argsort(groups, axis=1, kind="stable")
    mask = np.ones_like(groups)
    np.put_along_axis(mask, order[:, : m - n], 0.0, axis=1)
    return np.moveaxis(mask.reshape(moved.shape), -1, axis).astype(np.float32)


def is_nm_sparse(w, n: int, m: int, axis: int = 0) -> bool:
    """True when every group of `m` consecutive entries along `axis` has at most `n` non-zeros."""
    w = np.asarray(w)
    axis = axis % w.ndim
    if w.shape[axis] % m:
        return False
    groups = np.moveaxis(w, axis, -1).reshape(-1, m)
    return bool(np.all(np.count_nonzero(groups, axis=1) <= n))


def sparsity_of(w) -> float:
    """Share of exact zeros."""
    w = np.asarray(w)
    return float(1.0 - np.count_nonzero(w) / max(1, w.size))
