"""Loading `.keras` files of keras-hub tasks with their optimizer state.

keras-hub task models override `compile()`, so `keras.saving.load_model` skips `compile_from_config` and the
optimizer (its step counter and moments) saved in the file is silently dropped. Pruning steps, learning-rate
schedules and Adam moments all live there, so `load_model` here recompiles from the saved compile config and
loads the optimizer variables too. Loads with Keras safe_mode (no arbitrary code).

Example:

>>> import os, tempfile
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.saving import load_model
>>> clf = tiny_bert_classifier(["good", "bad"])
>>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
>>> clf.save(path)
>>> type(load_model(path)).__name__
'BertTextClassifier'
"""

from __future__ import annotations

import json
import warnings
import zipfile

import keras

import tfbertopt.distillation.word_students  # noqa: F401  (registers the BiLSTM/CNN students)
import tfbertopt.layers  # noqa: F401  (registers tfbertopt's layers and backbones)
import tfbertopt.train  # noqa: F401  (registers the learning-rate schedule)

def load_model(path, compile: bool = True, safe_mode: bool = True):
    """`keras.saving.load_model` that also restores a keras-hub task's compiled optimizer state."""
    import keras_hub  # noqa: F401  (registers keras-hub classes)

    # Keras warns that it skipped compile() and the optimizer's variables: that is what is restored here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*compile\\(\\)` was not called.*")
        warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer.*")
        model = keras.saving.load_model(path, compile=compile, safe_mode=safe_mode)
        if not compile:
            return model
        with zipfile.ZipFile(path) as archive:
            compile_config = json.loads(archive.read("config.json")).get("compile_config")
        optimizer = getattr(model, "optimizer", None)
        restored = optimizer is not None and int(keras.ops.convert_to_numpy(optimizer.iterations)) > 0
        if compile_config and not restored:
            model.compile_from_config(compile_config)
            model.optimizer.build(model.trainable_variables)
            model.load_weights(path)
    return model
