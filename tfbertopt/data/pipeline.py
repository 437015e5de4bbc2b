"""Tokenize GLUE examples once with the model's own keras-hub preprocessor, then batch with per-batch padding.

SST-2 sentences are short (median ~10 tokens), so trimming each batch to its longest example and grouping
examples of similar length ("sortish" batching) cuts fine-tuning time several-fold against padding every
example to 128.

Example:

>>> import numpy as np
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.data.pipeline import encode, make_dataset
>>> clf = tiny_bert_classifier(["good", "bad", "movie"])
>>> features = encode([("good movie",), ("bad",)], clf.preprocessor)
>>> features["token_ids"].shape
(2, 32)
>>> ds = make_dataset(features, np.array([1, 0]), batch_size=2)
>>> x, y = next(iter(ds))
>>> x["token_ids"].shape  # trimmed to the batch's longest example ([CLS] good movie [SEP])
TensorShape([2, 4])
"""

from __future__ import annotations

import contextlib
import logging

import keras
import numpy as np

logger = logging.getLogger(__name__)

FEATURES = ("token_ids", "padding_mask", "segment_ids")


def encode(texts, preprocessor, chunk_size: int = 2048) -> dict[str, np.ndarray]:
    """Tokenizes a list of 1- or 2-segment text tuples to fixed-length int32 arrays.

    Returns a dict with the model's input names (token_ids, padding_mask as int32 0/1, and segment_ids when
    the model's preprocessor produces them), each of shape (n, preprocessor.sequence_length).
    """
    import tensorflow as tf

    texts = [t if isinstance(t, tuple) else (t,) for t in texts]
    if not texts:
        raise ValueError("no examples to encode")
    n_segments = len(texts[0])
    if any(len(t) != n_segments for t in texts):
        raise ValueError("examples mix single sentences and sentence pairs")
    chunks = {}
    for start in range(0, len(texts), chunk_size):
        part = texts[start:start + chunk_size]
        columns = tuple(tf.constant([t[i] for t in part]) for i in range(n_segments))
        x = preprocessor(x=columns[0] if n_segments == 1 else columns)  # x=: a positional tuple is split into (x, y)
        x = x[0] if isinstance(x, tuple) else x
        for name, value in x.items():
            chunks.setdefault(name, []).append(np.asarray(value).astype(np.int32))
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def lengths(features: dict[str, np.ndarray]) -> np.ndarray:
    """Number of real (non-padding) tokens per example."""
    return features["padding_mask"].astype(bool).sum(axis=1)


def length_order(features: dict[str, np.ndarray]) -> np.ndarray:
    """Example indices, shortest first (stable): batches taken in this order pad least."""
    return np.argsort(lengths(features), kind="stable")


def _batch_predictor(model):
    """A compiled inference call of `model` (its predict function, traced afresh so that nothing changed since an
    earlier call is missed), or the eager call for a model of (or under) a tf.distribute strategy with replicas (whose
    predict step splits a batch across them and gathers it back in another shape)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = getattr(getattr(model, "distribute_strategy", None), "num_replicas_in_sync", 1)
        if tf.distribute.has_strategy() or replicas > 1:
            return lambda x: keras.tree.map_structure(np.asarray, model(x, training=False))
    model.make_predict_function(force=True)
    return model.predict_on_batch


def predict_batches(model, features: dict[str, np.ndarray], batch_size: int = 64, width_multiple: int = 16):
    """(rows, outputs) of `model`'s compiled inference (`predict_on_batch`, every backend) over `features`, shortest
    examples first, each batch padded to its longest example rounded up to `width_multiple` (a few shapes to
    compile); the caller writes each batch's outputs to its `rows`. Call it inside `without_preprocessor(model)`."""
    order = length_order(features)
    sorted_features = {k: v[order] for k, v in features.items()}
    predict = _batch_predictor(model)
    start = 0
    for x in make_dataset(sorted_features, None, batch_size=batch_size, width_multiple=width_multiple):
        n = int(x["token_ids"].shape[0])
        yield order[start:start + n], predict(x)
        start += n


def batch_indices(
    lens: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0, sort_window: int = 20
) -> list[np.ndarray]:
    """Index batches. Shuffled: random order, then sorted by length inside windows of `sort_window` batches,
    batches themselves shuffled. Not shuffled: original order (evaluation stays in dataset order)."""
    n = len(lens)
    if not shuffle:
        return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    rng = np.random.default_rng(seed + epoch)
    order = rng.permutation(n)
    window = batch_size * sort_window
    batches = []
    for start in range(0, n, window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lens[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def make_dataset(
    features: dict[str, np.ndarray],
    labels: np.ndarray | None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    pad_to_batch: bool = True,
    repeat_epochs: int = 1,
    sort_window: int = 20,
    width_multiple: int = 1,
):
    """A tf.data pipeline of (features, labels) batches, trimmed to each batch's longest example.

    With `shuffle`, each pass over the data draws a fresh order (seeded by `seed` and the pass number).
    `pad_to_batch=False` pads every batch to the full sequence length, which the dataset's spec then states (static
    shapes, for TPUs and XLA); `width_multiple` rounds each batch's width up to a multiple of it, so that a compiled
    function sees a few shapes (`predict_batches`).
    """
    import tensorflow as tf

    lens = lengths(features)
    names = [k for k in FEATURES if k in features]
    label_dtype = None if labels is None else (tf.float32 if np.asarray(labels).dtype.kind == "f" else tf.int32)

    def generate():
        for epoch in range(repeat_epochs):
            for idx in batch_indices(lens, batch_size, shuffle, seed, epoch, sort_window):
                width = features["token_ids"].shape[1]
                if pad_to_batch:
                    width = min(width, -(-int(lens[idx].max()) // width_multiple) * width_multiple)
                x = {k: features[k][idx, :width] for k in names}
                yield (x, labels[idx]) if labels is not None else x

    width = None if pad_to_batch else features["token_ids"].shape[1]
    x_spec = {k: tf.TensorSpec((None, width), tf.int32) for k in names}
    spec = (x_spec, tf.TensorSpec((None,), label_dtype)) if labels is not None else x_spec
    return tf.data.Dataset.from_generator(generate, output_signature=spec).prefetch(2)


class ShardingError(ValueError):
    """A dataset whose batches cannot be split evenly over the workers; the message says which numbers to change."""


def check_shardable(n: int, batch_size: int, count: int) -> None:
    """ShardingError unless every batch of `n` examples in batches of `batch_size` splits into `count` equal slices
    (multi-worker training: uneven slices would weigh examples unequally in the averaged gradient).

    >>> check_shardable(100, 20, 2)
    >>> check_shardable(100, 16, 3)
    Traceback (most recent call last):
    ...
    tfbertopt.data.pipeline.ShardingError: cannot shard 100 examples in batches of 16 over 3 workers: 16 is not a multiple of 3; use a batch_size that is
    """
    if batch_size % count:
        raise ShardingError(f"cannot shard {n} examples in batches of {batch_size} over {count} workers: {batch_size} "
                            f"is not a multiple of {count}; use a batch_size that is")
    if n % batch_size % count:
        raise ShardingError(f"cannot shard {n} examples in batches of {batch_size} over {count} workers: the last "
                            f"batch has {n % batch_size} examples, not a multiple of {count}; use a number of "
                            f"examples (data.max_train_examples) that leaves one")


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def step_budget(n: int, steps: int, batch_size: int = 32) -> tuple[int, int]:
    """(epochs, steps per epoch) that run `steps` training steps over `n` examples, or up to `epochs - 1` more:
    `finetune`'s `max_steps` caps each epoch, so one epoch capped at a budget larger than an epoch (MRPC: 115 steps
    of 32) would stop short.

    >>> step_budget(3668, 2000)   # MRPC train, 115 steps an epoch
    (18, 112)
    """
    epochs = max(1, -(-steps // steps_per_epoch(n, batch_size)))
    return epochs, -(-steps // epochs)


def model_input_names(model) -> tuple:
    """The classifier's token inputs, in FEATURES order (DistilBERT/RoBERTa have no segment_ids)."""
    names = {t.name.split(":")[0] for t in model.inputs} if isinstance(model.inputs, list) else set(model.inputs)
    return tuple(n for n in FEATURES if n in names)


@contextlib.contextmanager
def without_preprocessor(model):
    """Detach a keras-hub task's preprocessor so fit/predict take token tensors; restore it afterwards."""
    preprocessor = getattr(model, "preprocessor", None)
    model.preprocessor = None
    try:
        yield model
    finally:
        model.preprocessor = preprocessor
