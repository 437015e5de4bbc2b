"""Rank rules: exact energy, budgets that hold, clear errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.profiles import examples  # pytest puts tests/ on sys.path

from tfbertopt.factorization.rank import (
    BudgetError,
    check_rank,
    max_useful_rank,
    rank_for_energy,
    ranks_for_budget,
)

spectrum = st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=40).map(
    lambda v: np.sort(np.array(v))[::-1])


@given(spectrum, st.floats(0.01, 1.0))
def test_energy_rank_is_the_smallest_that_keeps_the_energy(s, energy):
    r = rank_for_energy(s, energy)
    assert 1 <= r <= len(s)
    total = (s ** 2).sum()
    if total > 0:
        assert (s[:r] ** 2).sum() >= (energy - 1e-9) * total
        if r > 1:
            assert (s[:r - 1] ** 2).sum() < energy * total


@given(spectrum, st.floats(0.01, 0.99), st.floats(0.01, 0.99))
def test_energy_rank_is_monotone(s, a, b):
    lo, hi = sorted((a, b))
    assert rank_for_energy(s, lo) <= rank_for_energy(s, hi)


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.tuples(st.integers(2, 40), st.integers(2, 40)), min_size=1, max_size=5), st.floats(0.0, 1.0),
       st.integers(0, 10 ** 6))
def test_budget_ranks_never_exceed_the_budget(shapes, fraction, seed):
    rng = np.random.default_rng(seed)
    spectra = {i: (np.sort(rng.random(min(m, n)))[::-1], (m, n)) for i, (m, n) in enumerate(shapes)}
    floor = sum(m + n for m, n in shapes)
    dense = sum(m * n for m, n in shapes)
    budget = int(floor + fraction * max(0, dense - floor))
    ranks = ranks_for_budget(spectra, budget)
    used = 0
    for key, r in ranks.items():
        m, n = spectra[key][1]
        if r is None:       # dense: only where rank 1 was already no smaller, or the rank reached that point
            used += m * n
        else:
            assert 1 <= r <= max_useful_rank((m, n)) and r <= min(m, n)
            used += r * (m + n)
    # Switching a kernel to dense at its break-even rank overshoots by less than one rank step per kernel.
    assert used <= budget + sum(m + n for m, n in shapes)


def test_budget_spends_where_the_energy_is():
    flat = np.ones(16)
    peaked = np.array([10.0] + [0.1] * 15)
    ranks = ranks_for_budget({"flat": (flat, (16, 16)), "peaked": (peaked, (16, 16))}, 32 * 6)
    assert ranks["flat"] > ranks["peaked"] == 1


def test_impossible_budget_and_bad_ranks_are_named():
    with pytest.raises(BudgetError, match="rank 1 for all 2 kernels already needs 40"):
        ranks_for_budget({"a": (np.ones(4), (10, 10)), "b": (np.ones(4), (10, 10))}, 39)
    with pytest.raises(ValueError, match="rank 9 is larger than the 8 x 20 kernel allows"):
        check_rank(9, (8, 20))
    with pytest.raises(ValueError, match="integer >= 1"):
        check_rank(0, (8, 20))
    with pytest.raises(ValueError, match="energy must be in"):
        rank_for_energy(np.ones(3), 0.0)
