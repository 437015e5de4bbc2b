"""Inference and scoring of keras-hub classifiers: logits for tokenized features, predictions, GLUE metrics, and the
loss each task trains with. No training here (`tfbertopt.train`), so export and pruning can score a model without
importing the trainer.

Example:

>>> from tfbertopt.data.demo import demo_examples, demo_vocabulary
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.evaluation import evaluate
>>> sorted(evaluate(tiny_bert_classifier(demo_vocabulary()), demo_examples("dev", 16)))
['accuracy']
"""

from __future__ import annotations

import keras
import numpy as np

from tfbertopt import metrics as metrics_lib
from tfbertopt.data.pipeline import encode, make_dataset, without_preprocessor


def loss_for(task):
    if task.is_regression:
        return keras.losses.MeanSquaredError()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def predict_logits(model, features: dict, batch_size: int = 64) -> np.ndarray:
    """Logits for pre-tokenized features, batched with per-batch padding, in dataset order."""
    ds = make_dataset(features, None, batch_size=batch_size, shuffle=False)
    outputs = []
    with without_preprocessor(model):
        for x in ds:
            outputs.append(np.asarray(model(x, training=False)))
    return np.concatenate(outputs)


def predictions_from_logits(task, logits: np.ndarray) -> np.ndarray:
    return logits[:, 0] if task.is_regression else logits.argmax(axis=-1)


def evaluate(model, examples, batch_size: int = 64, features: dict | None = None) -> dict:
    """Task metrics (accuracy, F1, Matthews, Pearson/Spearman as apply) of `model` on `examples`."""
    features = features if features is not None else encode(examples.texts, model.preprocessor)
    logits = predict_logits(model, features, batch_size)
    return metrics_lib.compute_metrics(examples.task, examples.labels, predictions_from_logits(examples.task, logits))
