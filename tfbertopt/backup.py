"""`Backup`: Keras' `BackupAndRestore` made safe for workers that die: saves are atomic, and under multi-worker
training only the chief writes the backup while every worker restores from it.

Keras' callback overwrites `latest.weights.h5` in place, so a process killed while saving leaves half a file, and on
several workers every one of them writes the same files. Here each save writes a new weights file, named by its
epoch, then atomically replaces `training_metadata.json`, which names that file: a kill at any moment leaves the
previous backup whole. The other workers write theirs into their scratch folder (`tfbertopt.distribute.local_path`;
saving must run on every worker, as some variable reads are collective) and restore from the chief's folder, which
must therefore be on a file system every worker reads (NFS, GCS, a shared volume).

Keras 3 resumes at the start of the epoch after the last backup (it records the batch but does not skip to it), so
`Backup` saves at the end of each epoch.

Example (a run stopped in its second epoch):

>>> import os, tempfile
>>> import keras, numpy as np
>>> from tfbertopt.backup import Backup
>>> from tfbertopt.backup import finished_epochs
>>> folder = tempfile.mkdtemp()
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> model.compile("sgd", "mse")
>>> def interrupt(epoch, logs):
...     if epoch == 1:
...         raise KeyboardInterrupt("stopped in epoch 2")
>>> try:
...     model.fit(np.ones((4, 2)), np.ones(4), epochs=3, verbose=0,
...               callbacks=[Backup(folder), keras.callbacks.LambdaCallback(on_epoch_begin=interrupt)])
... except KeyboardInterrupt:
...     pass
>>> finished_epochs(folder), sorted(os.listdir(folder))
(1, ['epoch1.weights.h5', 'training_metadata.json'])
"""

from __future__ import annotations

import json
import os
import shutil

import keras

from tfbertopt.distribute import chief_path, local_path, replace_atomically, write_json_atomically

METADATA = "training_metadata.json"


def read_metadata(backup_dir) -> dict | None:
    """The metadata of the last backup in `backup_dir` (the chief's folder), or None when there is none."""
    path = os.path.join(chief_path(backup_dir), METADATA)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def finished_epochs(backup_dir) -> int:
    """Epochs a backup in `backup_dir` has finished (0 when there is none)."""
    metadata = read_metadata(backup_dir)
    return int(metadata.get("epoch", 0)) if metadata else 0


class Backup(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore(backup_dir)` with atomic, chief-only saves at each epoch end (see the
    module)."""

    def __init__(self, backup_dir, delete_checkpoint: bool = True):
        super().__init__(chief_path(backup_dir), save_freq="epoch", delete_checkpoint=delete_checkpoint)
        self.write_dir = local_path(backup_dir)

    def on_train_begin(self, logs=None):
        self._load_model()

    def _load_model(self):
        metadata = read_metadata(self.backup_dir)
        if metadata is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, metadata["weights"]))
        self.model._initial_epoch = metadata["epoch"]

    def _save_model(self):
        os.makedirs(self.write_dir, exist_ok=True)
        name = f"epoch{self._current_epoch}.weights.h5"
        self.model.save_weights(os.path.join(self.write_dir, name), overwrite=True)
        write_json_atomically({"epoch": self._current_epoch, "weights": name},
                              os.path.join(self.write_dir, METADATA))   # the commit point
        for old in os.listdir(self.write_dir):
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.write_dir, old))

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            shutil.rmtree(self.write_dir, ignore_errors=True)


class EpochWeights(keras.callbacks.Callback):
    """Saves the weights after each epoch to `folder/epoch_NN.weights.h5` (1-based NN), atomically, on the chief
    (other workers: their scratch folder)."""

    def __init__(self, folder):
        super().__init__()
        self.folder = local_path(folder)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.folder, exist_ok=True)
        replace_atomically(self.model.save_weights, os.path.join(self.folder, f"epoch_{epoch + 1:02d}.weights.h5"))
