"""Mask math: exact sparsity, N:M patterns, ties, all-zero kernels, NaN/Inf rejected."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from helpers.profiles import examples  # pytest puts tests/ on sys.path

from tfbertopt.pruning.masks import (
    InvalidWeightsError,
    global_magnitude_masks,
    is_nm_sparse,
    magnitude_mask,
    nm_mask,
)

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
kernels = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=12), elements=finite)


@settings(max_examples=examples(200), deadline=None)
@given(w=kernels, sparsity=st.floats(0.0, 0.99))
def test_magnitude_mask_exact_and_keeps_the_largest(w, sparsity):
    mask = magnitude_mask(w, sparsity)
    k = int(round(sparsity * w.size))
    assert mask.shape == w.shape and set(np.unique(mask)) <= {0.0, 1.0}
    assert int((mask == 0).sum()) == k
    if 0 < k < w.size:
        assert np.abs(w[mask == 1]).min() >= np.abs(w[mask == 0]).max()


def test_ties_and_all_zero_kernels_still_exact():
    assert (magnitude_mask(np.ones((4, 5)), 0.4) == 0).sum() == 8
    assert (magnitude_mask(np.zeros((10,)), 0.3) == 0).sum() == 3
    np.testing.assert_array_equal(magnitude_mask(np.ones(4), 0.5), magnitude_mask(np.ones(4), 0.5))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_rejected_with_name(bad):
    w = np.ones((3, 4), np.float32)
    w[1, 2] = bad
    with pytest.raises(InvalidWeightsError, match="layer_3/kernel: 1 NaN/Inf values"):
        magnitude_mask(w, 0.5, name="layer_3/kernel")
    with pytest.raises(InvalidWeightsError):
        nm_mask(w, 2, 4, axis=1)
    with pytest.raises(InvalidWeightsError):
        global_magnitude_masks([np.ones(4), w], 0.5)


@settings(max_examples=examples(100), deadline=None)
@given(ws=st.lists(kernels, min_size=1, max_size=4), sparsity=st.floats(0.0, 0.99))
def test_global_masks_exact_total(ws, sparsity):
    masks = global_magnitude_masks(ws, sparsity)
    total = sum(w.size for w in ws)
    assert sum(int((m == 0).sum()) for m in masks) == int(round(sparsity * total))
    kept = np.concatenate([np.abs(w[m == 1]) for w, m in zip(ws, masks)])
    dropped = np.concatenate([np.abs(w[m == 0]) for w, m in zip(ws, masks)])
    if kept.size and dropped.size:
        assert kept.min() >= dropped.max()


@settings(max_examples=examples(100), deadline=None)
@given(groups=st.integers(1, 6), cols=st.integers(1, 5), nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 8)]),
       data=st.data())
def test_nm_mask_pattern(groups, cols, nm, data):
    n, m = nm
    w = data.draw(hnp.arrays(np.float32, (groups * m, cols), elements=finite))
    mask = nm_mask(w, n, m, axis=0)
    assert is_nm_sparse(mask, n, m, axis=0)
    per_group = mask.reshape(groups, m, cols).sum(axis=1)
    assert np.all(per_group == n)
    grouped = np.abs(w).reshape(groups, m, cols)
    kept = np.where(mask.reshape(groups, m, cols) == 1, grouped, np.inf).min(axis=1)
    dropped = np.where(mask.reshape(groups, m, cols) == 0, grouped, -np.inf).max(axis=1)
    assert np.all(kept >= dropped)


def test_nm_checker_and_errors():
    w = np.array([[1, 0], [0, 2], [3, 0], [0, 0]], np.float32)
    assert is_nm_sparse(w, 2, 4, axis=0) and is_nm_sparse(w, 1, 4, axis=1) is False
    assert not is_nm_sparse(np.ones((4, 2)), 2, 4, axis=0)
    assert not is_nm_sparse(np.ones((6, 2)), 2, 4, axis=0)
    with pytest.raises(ValueError, match="not a multiple of M=4"):
        nm_mask(np.ones((6, 2)), 2, 4)
    with pytest.raises(ValueError, match="0 < N < M"):
        nm_mask(np.ones((4, 2)), 4, 4)
