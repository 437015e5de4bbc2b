"""Weight factorization and parameter sharing for BERT classifiers (ALBERT's two ideas, and SVD).

- `plan_factorization` / `factorize`: truncated-SVD factor pairs for attention and FFN kernels (`low_rank.py`),
  ranks from `rank.py` (fixed, kept energy, or a global weight budget).
- `factorize_embeddings`: ALBERT's V x E token table + E x H projection, initialised by SVD (`embedding.py`).
- `share_layers`: cross-layer sharing of whole encoder layers, initialised from the group average or its first
  layer (`sharing.py`).

All three return a new `BertTextClassifier` over tfbertopt's `PrunedBertBackbone` (built by `rebuild.py`) that
fine-tunes, saves, loads and exports like any other; they compose (factorize -> distil/recover -> int8).
"""

from tfbertopt.factorization.embedding import factorize_embeddings
from tfbertopt.factorization.low_rank import FactorizationPlan, factorize, plan_factorization
from tfbertopt.factorization.rank import BudgetError, rank_for_energy, ranks_for_budget
from tfbertopt.factorization.sharing import share_layers

__all__ = ["factorize", "plan_factorization", "FactorizationPlan", "factorize_embeddings", "share_layers",
           "BudgetError", "rank_for_energy", "ranks_for_budget"]
