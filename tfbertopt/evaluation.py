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
from tfbertopt.data.pipeline import encode, predict_batches, without_preprocessor


def loss_for(task):
    if task.is_regression:
        return keras.losses.MeanSquaredError()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def predict_logits(model, features: dict, batch_size: int = 64) -> np.ndarray:
    """Logits for pre-tokenized features, in dataset order (compiled, batches of like lengths: `predict_batches`)."""
    logits = None
    with without_preprocessor(model):
        for rows, out in predict_batches(model, features, batch_size):
            if logits is None:
                logits = np.empty((len(features["token_ids"]),) + out.shape[1:], out.dtype)
            logits[rows] = out
    return logits


def predictions_from_logits(task, logits: np.ndarray) -> np.ndarray:
    return logits[:, 0] if task.is_regression else logits.argmax(axis=-1)


def evaluate(model, examples, batch_size: int = 64, features: dict | None = None) -> dict:
    """Task metrics (accuracy, F1, Matthews, Pearson/Spearman as apply) of `model` on `examples`."""
    features = features if features is not None else encode(examples.texts, model.preprocessor)
    logits = predict_logits(model, features, batch_size)
    return metrics_lib.compute_metrics(examples.task, examples.labels, predictions_from_logits(examples.task, logits))
