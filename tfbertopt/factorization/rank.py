"""Rank choice for truncated SVD: a fixed rank, a kept-energy fraction, or a global parameter budget.

Pure NumPy on singular values, so the rules are property-testable without a model.

- `rank_for_energy(s, energy)`: the smallest r whose top singular values keep `energy` of sum(s^2).
- `ranks_for_budget(spectra, budget)`: ranks for several matrices that together hold at most `budget` weights,
  spending each next rank unit where it adds the most *relative* energy (sigma_k^2 / ||W||_F^2), never beyond the
  rank at which the factor pair would be as large as the dense matrix (such matrices stay dense).

Example:

>>> import numpy as np
>>> from tfbertopt.factorization.rank import rank_for_energy, ranks_for_budget, max_useful_rank
>>> rank_for_energy(np.array([3.0, 1.0, 0.1]), 0.85)
1
>>> rank_for_energy(np.array([3.0, 1.0, 0.1]), 0.9)   # 9 / 10.01 < 0.9
2
>>> max_useful_rank((384, 1536))   # beyond this a factor pair holds more weights than the dense kernel
307
>>> ranks_for_budget({"a": (np.array([4.0, 2.0, 1.0, 1.0]), (8, 8)), "b": (np.array([1.0, 1.0]), (8, 2))}, 48)
{'a': 2, 'b': 1}
"""

from __future__ import annotations

import heapq

import numpy as np


class BudgetError(ValueError):
    """A parameter budget that no choice of ranks can meet."""


def max_useful_rank(shape: tuple[int, int]) -> int:
    """The largest rank r with r * (m + n) < m * n (a factor pair smaller than the dense m x n matrix)."""
    m, n = int(shape[0]), int(shape[1])
    return max(0, (m * n - 1) // (m + n))


def check_rank(rank, shape: tuple[int, int], name: str = "kernel") -> int:
    """`rank` as an int, or ValueError naming the kernel when it is not in 1..min(shape)."""
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"{name}: rank must be an integer >= 1, got {rank!r}")
    limit = min(int(shape[0]), int(shape[1]))
    if rank > limit:
        raise ValueError(f"{name}: rank {rank} is larger than the {shape[0]} x {shape[1]} kernel allows "
                         f"(at most {limit})")
    return int(rank)


def rank_for_energy(singular_values: np.ndarray, energy: float) -> int:
    """Smallest rank keeping at least `energy` (0 < energy <= 1) of the squared singular values' sum."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy!r}")
    s2 = np.asarray(singular_values, dtype=np.float64) ** 2
    total = s2.sum()
    if total == 0.0:
        return 1
    kept = np.cumsum(s2) / total
    return int(min(len(s2), np.searchsorted(kept, energy - 1e-12) + 1))


def ranks_for_budget(spectra: dict, budget: int) -> dict:
    """Ranks (None = keep dense) for matrices `spectra[key] = (singular_values, (m, n))` holding <= `budget`
    weights in total (factor pairs r * (m + n), dense ones m * n).

    Raises:
      BudgetError: even rank 1 everywhere needs more than `budget` weights.
    """
    if not spectra:
        raise ValueError("no matrices to factorize")
    floor = sum(m + n for _, (m, n) in spectra.values())
    if budget < floor:
        raise BudgetError(f"a budget of {budget} weights cannot be met: rank 1 for all {len(spectra)} kernels "
                          f"already needs {floor}")
    ranks = {key: 1 for key in spectra}
    used = floor
    energy = {}
    heap = []
    for key, (s, shape) in spectra.items():
        s2 = np.asarray(s, dtype=np.float64) ** 2
        energy[key] = s2 / s2.sum() if s2.sum() > 0 else np.zeros_like(s2)
        if max_useful_rank(shape) > 1 and len(s2) > 1:
            heapq.heappush(heap, (-energy[key][1], key))
    while heap:
        _, key = heapq.heappop(heap)
        m, n = spectra[key][1]
        if used + m + n > budget:
            continue            # another (smaller) kernel may still fit
        ranks[key] += 1
        used += m + n
        r = ranks[key]
        if r < max_useful_rank((m, n)) and r < len(energy[key]):
            heapq.heappush(heap, (-energy[key][r], key))
    for key, (_, shape) in spectra.items():
        if ranks[key] > max_useful_rank(shape):
            ranks[key] = None   # the factor pair would be no smaller than the dense kernel
    return ranks
