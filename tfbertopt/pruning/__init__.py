"""Pruning for keras-hub BERT-family models inside `model.fit`.

>>> from tfbertopt.pruning import PolynomialDecay, prune_low_magnitude, UpdatePruningStep, strip_pruning
"""

from tfbertopt.pruning.callbacks import PruningSummaries, UpdatePruningStep
from tfbertopt.pruning.masks import global_magnitude_masks, is_nm_sparse, magnitude_mask, nm_mask, sparsity_of
from tfbertopt.pruning.policy import PruningPolicy
from tfbertopt.pruning.prune import MaskConstraint, get_pruning, is_pruned, prune_low_magnitude, strip_pruning
from tfbertopt.pruning.schedule import ConstantSparsity, FunctionSparsity, PolynomialDecay, PruningSchedule

__all__ = [
    "ConstantSparsity", "PolynomialDecay", "FunctionSparsity", "PruningSchedule", "PruningPolicy",
    "prune_low_magnitude", "strip_pruning", "get_pruning", "is_pruned", "UpdatePruningStep", "PruningSummaries",
    "MaskConstraint", "magnitude_mask", "global_magnitude_masks", "nm_mask", "is_nm_sparse", "sparsity_of",
]
