"""Weight factorization and parameter sharing for keras-hub text classifiers (ALBERT's two ideas, and SVD).

- `plan_factorization` / `factorize`: truncated-SVD factor pairs for attention and FFN kernels (`low_rank.py`),
  ranks from `rank.py` (fixed, kept energy, or a global weight budget).
- `factorize_embeddings`: ALBERT's V x E token table + E x H projection, initialised by SVD (`embedding.py`).
- `share_layers`: cross-layer sharing of whole encoder layers, initialised from the group average or its first
  layer; `unshare_layers`, its inverse, gives every layer its own copy (ALBERT -> per-layer weights) (`sharing.py`).

Each returns a new classifier of the source's own task class over a `CompressedBackbone` (built by
`tfbertopt.surgery`) that fine-tunes, saves, loads and exports like any other; they compose (factorize ->
distil/recover -> int8).
"""

from tfbertopt.factorization.embedding import factorize_embeddings
from tfbertopt.factorization.low_rank import FactorizationPlan, factorize, plan_factorization
from tfbertopt.factorization.rank import BudgetError, rank_for_energy, ranks_for_budget
from tfbertopt.factorization.sharing import share_layers, unshare_layers

__all__ = ["factorize", "plan_factorization", "FactorizationPlan", "factorize_embeddings", "share_layers", "unshare_layers",
           "BudgetError", "rank_for_energy", "ranks_for_budget"]
