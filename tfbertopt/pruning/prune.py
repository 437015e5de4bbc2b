"""Magnitude pruning state attached to a keras-hub model: masks as variable constraints.

`prune_low_magnitude(model, schedule)` gives each selected kernel a mask variable and sets the kernel's
`constraint` to multiply by it. Keras optimizers apply variable constraints right after every update, inside the
compiled train step, so pruned weights are exactly zero after every step whatever the optimizer's momentum says,
on any backend, with no per-step Python work. `UpdatePruningStep` recomputes masks on the schedule's steps.

The mask of a kernel is always its zero pattern (pruned weights are exactly zero), so a `.keras` save or a
`BackupAndRestore` checkpoint carries the masks in the weights themselves; the pruning step is the optimizer's
`iterations`, saved with the optimizer. `prune_low_magnitude` on a loaded model picks both up again.

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.pruning import prune_low_magnitude, ConstantSparsity, get_pruning, strip_pruning
>>> clf = tiny_bert_classifier(["good", "bad"], num_layers=2)
>>> clf = prune_low_magnitude(clf, ConstantSparsity(0.5, begin_step=0))
>>> state = get_pruning(clf)
>>> state.update(step=0)
True
>>> float(round(state.overall_sparsity(), 3))
0.5
>>> clf = strip_pruning(clf)
"""

from __future__ import annotations

import contextlib
import logging
import weakref

import keras
import numpy as np

from tfbertopt.pruning import masks as masks_lib
from tfbertopt.pruning.policy import PruningPolicy
from tfbertopt.pruning.schedule import ConstantSparsity, PruningSchedule

logger = logging.getLogger(__name__)

_STATES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@keras.saving.register_keras_serializable(package="tfbertopt")
class MaskConstraint(keras.constraints.Constraint):
    """Multiplies a weight by a fixed 0/1 mask variable (applied by the optimizer after each update)."""

    def __init__(self, mask):
        self.mask = mask

    def __call__(self, w):
        return w * keras.ops.cast(self.mask, w.dtype)

    def get_config(self):
        # Masks are the zero pattern of the weights; nothing to serialize here.
        return {}

    @classmethod
    def from_config(cls, config):
        return None


def _variable_scope(variable):
    """The distribution strategy scope a weight lives in (tf.distribute), so masks are mirrored like it."""
    inner = getattr(variable, "value", variable)
    strategy = getattr(inner, "distribute_strategy", None) or getattr(inner, "_distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def attach_mask(ref, value: np.ndarray, suffix: str = "mask"):
    """A 0/1 mask variable for `ref`'s kernel (mirrored like the kernel under tf.distribute), set as the kernel's
    constraint so the optimizer applies it after every update. Returns the mask variable."""
    with _variable_scope(ref.variable):
        mask = keras.Variable(np.asarray(value, np.float32), trainable=False, dtype="float32",
                              name=ref.path.replace("/", "_") + "_" + suffix)
    ref.variable.constraint = MaskConstraint(mask)
    return mask


def _matrix_view(ref, w: np.ndarray) -> np.ndarray:
    """Kernel as (inputs, outputs): the attention output kernel (heads, head_dim, H) has two input axes."""
    if ref.role == "attention_output":
        return w.reshape(-1, w.shape[-1])
    return w.reshape(w.shape[0], -1)


class Pruning:
    """Masks, schedule and selection of one pruned model. Get it with `get_pruning(model)`."""

    def __init__(self, model, schedule: PruningSchedule, policy: PruningPolicy, sparsity_m_by_n=None,
                 global_threshold: bool = False):
        if not isinstance(schedule, PruningSchedule):
            raise TypeError(f"pruning_schedule must be a tfbertopt PruningSchedule, got {type(schedule).__name__}")
        if sparsity_m_by_n is not None:
            n, m = sparsity_m_by_n
            if not (isinstance(n, int) and isinstance(m, int) and 0 < n < m):
                raise ValueError(f"sparsity_m_by_n must be (N, M) integers with 0 < N < M, got {sparsity_m_by_n}")
        self.model_ref = weakref.ref(model)
        self.schedule, self.policy = schedule, policy
        self.sparsity_m_by_n, self.global_threshold = sparsity_m_by_n, global_threshold
        self.refs = policy.select(model)
        if sparsity_m_by_n is not None:
            for ref in self.refs:
                rows = _matrix_view(ref, np.zeros(ref.shape, np.float32)).shape[0]
                if rows % sparsity_m_by_n[1]:
                    raise ValueError(f"{ref.path}: {rows} input channels are not a multiple of "
                                     f"M={sparsity_m_by_n[1]}")
        self.masks = [attach_mask(ref, np.ones(ref.shape, np.float32)) for ref in self.refs]
        self.current_sparsity = 0.0
        self.refresh_from_weights()
        self.needs_retrace = True

    def refresh_from_weights(self) -> None:
        """Sets every mask to its kernel's non-zero pattern (after loading weights or a checkpoint)."""
        for ref, mask in zip(self.refs, self.masks):
            mask.assign((keras.ops.convert_to_numpy(ref.variable) != 0).astype(np.float32))

    def _compute(self, sparsity: float) -> list[np.ndarray]:
        weights = [keras.ops.convert_to_numpy(ref.variable) for ref in self.refs]
        if self.sparsity_m_by_n is not None:
            n, m = self.sparsity_m_by_n
            return [masks_lib.nm_mask(_matrix_view(ref, w), n, m, axis=0, name=ref.path).reshape(w.shape)
                    for ref, w in zip(self.refs, weights)]
        if self.global_threshold:
            return masks_lib.global_magnitude_masks(weights, sparsity, [r.path for r in self.refs])
        return [masks_lib.magnitude_mask(w, sparsity, ref.path) for ref, w in zip(self.refs, weights)]

    def update(self, step: int) -> bool:
        """Recomputes masks if the schedule prunes at `step`; applies them to the weights. True if it did."""
        should, sparsity = self.schedule(step)
        if not should:
            return False
        for ref, mask, new in zip(self.refs, self.masks, self._compute(sparsity)):
            mask.assign(new)
            ref.variable.assign(keras.ops.convert_to_numpy(ref.variable) * new)
        self.current_sparsity = sparsity
        return True

    def sparsities(self) -> dict[str, float]:
        return {ref.path: masks_lib.sparsity_of(keras.ops.convert_to_numpy(ref.variable)) for ref in self.refs}

    def overall_sparsity(self) -> float:
        zeros = sum(ref.size - np.count_nonzero(keras.ops.convert_to_numpy(ref.variable)) for ref in self.refs)
        return zeros / sum(ref.size for ref in self.refs)

    def detach(self) -> None:
        for ref, mask in zip(self.refs, self.masks):
            ref.variable.assign(keras.ops.convert_to_numpy(ref.variable) * keras.ops.convert_to_numpy(mask))
            ref.variable.constraint = None


def prune_low_magnitude(model, pruning_schedule: PruningSchedule | None = None, policy: PruningPolicy | None = None,
                        sparsity_m_by_n: tuple[int, int] | None = None, global_threshold: bool = False):
    """Makes `model` prunable in place and returns it (TFMOT's entry point, for keras-hub models).

    Args:
      model: a keras-hub BERT-family classifier or backbone.
      pruning_schedule: when and how much (default ConstantSparsity(0.5, 0)).
      policy: which kernels (default: attention and FFN kernels of every encoder layer).
      sparsity_m_by_n: e.g. (2, 4): keep N of every M weights along the input-channel axis instead of a global
        magnitude ranking; the schedule then only says when masks are recomputed.
      global_threshold: one magnitude threshold across all selected kernels instead of one per kernel.

    Train with `callbacks=[UpdatePruningStep()]`; finish with `strip_pruning`.
    """
    if model in _STATES:
        raise ValueError("model is already being pruned; call strip_pruning(model) first")
    state = Pruning(model, pruning_schedule or ConstantSparsity(0.5, 0), policy or PruningPolicy(),
                    sparsity_m_by_n, global_threshold)
    _STATES[model] = state
    return model


def get_pruning(model) -> Pruning:
    """The pruning state of `model`, or of its student when `model` is a `Distiller` (distillation-guided
    pruning: prune the student, fit the Distiller with `UpdatePruningStep`)."""
    state = _STATES.get(model)
    if state is None and getattr(model, "student", None) is not None:
        state = _STATES.get(model.student)
    if state is None:
        raise ValueError(f"{type(model).__name__} is not being pruned; call prune_low_magnitude(model, ...) first")
    return state


def is_pruned(model) -> bool:
    return model in _STATES


def strip_pruning(model):
    """Removes the pruning state (masks stay applied as zeros in the weights) and returns the plain model."""
    state = _STATES.pop(model, None)
    if state is not None:
        state.detach()
        if getattr(model, "train_function", None) is not None:
            model.make_train_function(force=True)
    return model
