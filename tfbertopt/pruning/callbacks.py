"""Callbacks that drive pruning during `model.fit` (TFMOT names: UpdatePruningStep, PruningSummaries).

Example:

>>> from tfbertopt.pruning.callbacks import UpdatePruningStep
>>> UpdatePruningStep().verbose
0
"""

from __future__ import annotations

import logging

import keras

from tfbertopt.pruning.prune import get_pruning

logger = logging.getLogger(__name__)


class UpdatePruningStep(keras.callbacks.Callback):
    """Recomputes masks on the schedule's steps (step = optimizer iterations) and logs `sparsity`.

    On the first batch of every `fit`, masks are re-derived from the weights' zero patterns, so a run resumed by
    `BackupAndRestore` (or from a loaded model) keeps exactly the masks it had.
    """

    def __init__(self, verbose: int = 0):
        super().__init__()
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        self.state = get_pruning(self.model)
        if self.state.needs_retrace:
            # Constraints are read when the train step is traced: make sure the traced step has them.
            self.model.make_train_function(force=True)
            self.state.needs_retrace = False
        self._first = True

    def on_train_batch_begin(self, batch, logs=None):
        if self._first:
            self.state.refresh_from_weights()
            self._first = False
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if self.state.update(step) and self.verbose:
            print(f"pruning: step {step}, sparsity {self.state.current_sparsity:.3f}", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["sparsity"] = self.state.overall_sparsity()


class PruningSummaries(keras.callbacks.Callback):
    """Writes per-kernel and overall sparsity to TensorBoard under `log_dir` at each epoch end."""

    def __init__(self, log_dir: str, update_freq: str = "epoch"):
        super().__init__()
        self.log_dir, self.update_freq = log_dir, update_freq

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        state = get_pruning(self.model)
        writer = tf.summary.create_file_writer(self.log_dir)
        with writer.as_default():
            tf.summary.scalar("pruning/sparsity", state.overall_sparsity(), step=epoch)
            for path, value in state.sparsities().items():
                tf.summary.scalar(f"pruning/{path}", value, step=epoch)
        writer.flush()
