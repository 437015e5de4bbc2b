"""More mask properties (hypothesis), beyond tests/pruning/test_masks.py: NaN/Inf anywhere in any shape is refused by
every mask function with the tensor's name; heavy ties and all-zero kernels still give exact, deterministic
sparsity; N:M masks along any axis of random-rank tensors keep exactly N per group, the largest ones."""

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

EXAMPLES = 100
shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)
sparsities = st.floats(0.0, 0.99, allow_nan=False)


@settings(max_examples=examples(EXAMPLES), deadline=None)
@given(shape=shapes, data=st.data(), bad=st.sampled_from([np.nan, np.inf, -np.inf]), count=st.integers(1, 4),
       dtype=st.sampled_from([np.float16, np.float32, np.float64]))
def test_nan_and_inf_anywhere_are_refused_by_name(shape, data, bad, count, dtype):
    w = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-10, 10, width=16)))
    flat = w.reshape(-1)
    positions = data.draw(st.lists(st.integers(0, w.size - 1), min_size=1, max_size=count, unique=True))
    flat[positions] = bad
    w = flat.reshape(shape)
    with pytest.raises(InvalidWeightsError, match=rf"enc/kernel: {len(positions)} NaN/Inf values"):
        magnitude_mask(w, data.draw(sparsities), name="enc/kernel")
    with pytest.raises(InvalidWeightsError, match="enc/kernel"):
        global_magnitude_masks([np.ones(3), w], data.draw(sparsities), names=["other", "enc/kernel"])
    if shape[0] % 2 == 0:
        with pytest.raises(InvalidWeightsError, match="enc/kernel"):
            nm_mask(w, 1, 2, axis=0, name="enc/kernel")
    assert issubclass(InvalidWeightsError, ValueError)


@settings(max_examples=examples(EXAMPLES), deadline=None)
@given(w=hnp.arrays(np.float32, shapes, elements=st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5])), s=sparsities)
def test_ties_give_exact_deterministic_sparsity(w, s):
    mask = magnitude_mask(w, s)
    k = int(round(s * w.size))
    assert int((mask == 0).sum()) == k
    np.testing.assert_array_equal(mask, magnitude_mask(w.copy(), s))   # ties broken by position, every time
    if 0 < k < w.size:
        assert np.abs(w[mask == 1]).min() >= np.abs(w[mask == 0]).max()
    # Applying the mask and pruning again at the same sparsity changes nothing (zeros are the smallest).
    np.testing.assert_array_equal(magnitude_mask(w * mask, s) == 0, mask == 0)


@settings(max_examples=examples(EXAMPLES), deadline=None)
@given(shapes_=st.lists(shapes, min_size=1, max_size=4), s=sparsities, nm=st.sampled_from([(1, 2), (2, 4), (1, 3)]))
def test_all_zero_kernels_reach_exact_sparsity(shapes_, s, nm):
    zeros = [np.zeros(shape, np.float32) for shape in shapes_]
    for w in zeros:
        assert int((magnitude_mask(w, s) == 0).sum()) == int(round(s * w.size))
    masks = global_magnitude_masks(zeros, s)
    assert sum(int((m == 0).sum()) for m in masks) == int(round(s * sum(w.size for w in zeros)))
    n, m = nm
    w = np.zeros((m * shapes_[0][0],) + tuple(shapes_[0][1:]), np.float32)
    mask = nm_mask(w, n, m, axis=0)
    assert is_nm_sparse(mask, n, m, axis=0) and int(mask.sum()) == n * w.size // m


@st.composite
def nm_case(draw):
    n, m = draw(st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (2, 8), (4, 8)]))
    ndim = draw(st.integers(1, 4))
    axis = draw(st.integers(-ndim, ndim - 1))
    shape = [draw(st.integers(1, 4)) for _ in range(ndim)]
    shape[axis] = m * draw(st.integers(1, 3))
    w = draw(hnp.arrays(np.float32, tuple(shape), elements=st.floats(-100, 100, width=32)))
    return w, n, m, axis


@settings(max_examples=examples(EXAMPLES), deadline=None)
@given(case=nm_case())
def test_nm_on_any_axis_of_random_shapes(case):
    w, n, m, axis = case
    mask = nm_mask(w, n, m, axis=axis)
    assert mask.shape == w.shape and mask.dtype == np.float32
    assert is_nm_sparse(mask, n, m, axis=axis) and is_nm_sparse(w * mask, n, m, axis=axis)
    groups = np.moveaxis(mask, axis, -1).reshape(-1, m)
    assert np.all(groups.sum(axis=1) == n)                       # exactly N kept, even with ties or zeros
    values = np.abs(np.moveaxis(w, axis, -1).reshape(-1, m))
    kept = np.where(groups == 1, values, np.inf).min(axis=1)
    dropped = np.where(groups == 0, values, -np.inf).max(axis=1)
    assert np.all(kept >= dropped)
    np.testing.assert_array_equal(mask, nm_mask(w, n, m, axis=axis - w.ndim if axis >= 0 else axis + w.ndim))


@settings(max_examples=examples(EXAMPLES), deadline=None)
@given(shape=shapes, m=st.integers(2, 8), n=st.integers(-2, 10), data=st.data())
def test_nm_bad_requests_are_value_errors(shape, m, n, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    w = np.ones(shape, np.float32)
    try:
        mask = nm_mask(w, n, m, axis=axis)
    except ValueError as err:
        assert "N:M" in str(err) or "not a multiple of M" in str(err)
        assert not (0 < n < m and shape[axis] % m == 0)
        return
    assert 0 < n < m and shape[axis] % m == 0 and is_nm_sparse(mask, n, m, axis=axis)
