"""Calibration sets for full-integer LiteRT export: a representative dataset in the exported signature's terms.

`export_litert(..., quantization="int8" | "16x8", calibration=...)` needs activation ranges, which the converter
records by running the float model on a representative dataset. `calibration_features` turns what the user has,
either a feature dict from `tfbertopt.data.pipeline.encode` or GLUE `Examples` (tokenized with the model's own
preprocessor), into validated int32 arrays; `representative_dataset` yields one example at a time as a dict keyed by
the signature's input names with exactly the signature's dtype (int32) and shape ((1, sequence_length), padded with
zeros or cut to that length; for a dynamic-shape export each example is trimmed to its real tokens).

At most `steps` examples are used (100 by default), drawn without replacement with a fixed seed so that a sorted or
label-ordered set still calibrates on a spread of examples. Bad input raises `ValueError` naming the problem: an
empty set, a missing input, a non-integer dtype, a wrong rank, inputs of different lengths, values outside int32,
token ids outside the vocabulary, segment ids outside the model's segments, or a padding mask that is not 0/1.

Example:

>>> from tfbertopt.data.demo import demo_examples, demo_vocabulary
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.data.calibration import calibration_features, representative_dataset
>>> clf = tiny_bert_classifier(demo_vocabulary(), sequence_length=16)
>>> names = ("token_ids", "padding_mask", "segment_ids")
>>> features = calibration_features(demo_examples("train", 40), clf, names, sequence_length=16, steps=8)
>>> features["token_ids"].shape, features["token_ids"].dtype
((8, 16), dtype('int32'))
>>> first = next(iter(representative_dataset(features, names, sequence_length=16)()))
>>> sorted(first), first["token_ids"].shape
(['padding_mask', 'segment_ids', 'token_ids'], (1, 16))
"""

from __future__ import annotations

import numpy as np

from tfbertopt.data.pipeline import encode

DEFAULT_STEPS = 100


def _vocabulary_size(model) -> int | None:
    backbone = getattr(model, "backbone", None)
    size = getattr(backbone, "vocabulary_size", None)
    return int(size) if size else None


def calibration_features(calibration, model, input_names, sequence_length: int | None = None,
                         steps: int = DEFAULT_STEPS, seed: int = 0) -> dict[str, np.ndarray]:
    """Validated int32 calibration arrays {input name: (n, length)}, at most `steps` examples.

    Args:
      calibration: a feature dict (from `encode`: token_ids, padding_mask[, segment_ids]) or GLUE `Examples`.
      model: the classifier being exported (its preprocessor encodes `Examples`; its vocabulary bounds token ids).
      input_names: the exported signature's inputs.
      sequence_length: the exported fixed length (arrays are padded with 0 or cut to it), or None.
      steps: how many examples to calibrate on (a seeded sample when the set is larger).
    """
    if calibration is None:
        raise ValueError("no calibration set: pass calibration= a feature dict from tfbertopt.data.pipeline.encode "
                         "or GLUE Examples")
    if steps is None or int(steps) < 1:
        raise ValueError(f"calibration_steps must be a positive number of examples, got {steps!r}")
    if hasattr(calibration, "texts"):  # GLUE Examples
        if len(calibration.texts) == 0:
            raise ValueError("the calibration set is empty (0 examples)")
        preprocessor = getattr(model, "preprocessor", None)
        if preprocessor is None:
            raise ValueError("calibration= got GLUE Examples but the model has no preprocessor to tokenize them; "
                             "pass a feature dict from tfbertopt.data.pipeline.encode instead")

        texts = list(calibration.texts)
        chosen = _sample(len(texts), steps, seed)
        calibration = encode([texts[i] for i in chosen], preprocessor)
    elif not isinstance(calibration, dict):
        raise ValueError(f"calibration= must be a feature dict (name -> int array) or GLUE Examples, got "
                         f"{type(calibration).__name__}")

    missing = [name for name in input_names if name not in calibration]
    if missing:
        raise ValueError(f"the calibration set lacks the model input(s) {missing}; it has {sorted(calibration)}, "
                         f"the exported signature needs {list(input_names)}")
    arrays = {}
    for name in input_names:
        try:
            value = np.asarray(calibration[name])
        except ValueError as e:     # ragged nested lists
            raise ValueError(f"calibration input '{name}' is not a rectangular array (rows of different lengths?): "
                             f"{e}") from None
        if value.dtype.kind not in "iub":
            raise ValueError(f"calibration input '{name}' has dtype {value.dtype}; the signature takes int32 "
                             f"token data (encode the texts with the model's preprocessor)")
        if value.ndim != 2:
            raise ValueError(f"calibration input '{name}' has shape {value.shape}; expected (examples, "
                             f"sequence_length)")
        if value.size and (value.min() < np.iinfo(np.int32).min or value.max() > np.iinfo(np.int32).max):
            raise ValueError(f"calibration input '{name}' holds values in [{value.min()}, {value.max()}], outside "
                             f"the signature's int32 (they would wrap around)")
        arrays[name] = value
    counts = {name: len(v) for name, v in arrays.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"calibration inputs disagree on the number of examples: {counts}")
    widths = {name: v.shape[1] for name, v in arrays.items()}
    if len(set(widths.values())) != 1:
        raise ValueError(f"calibration inputs disagree on the sequence length: {widths}")
    n = next(iter(counts.values()))
    if n == 0:
        raise ValueError("the calibration set is empty (0 examples)")

    chosen = _sample(n, steps, seed)
    arrays = {name: v[chosen] for name, v in arrays.items()}
    if sequence_length:
        arrays = {name: _fit_length(v, sequence_length) for name, v in arrays.items()}
    arrays = {name: v.astype(np.int32) for name, v in arrays.items()}

    vocabulary_size = _vocabulary_size(model)
    ids = arrays["token_ids"] if "token_ids" in arrays else None
    if ids is not None and ids.size and (ids.min() < 0 or (vocabulary_size and ids.max() >= vocabulary_size)):
        raise ValueError(f"calibration token_ids range over [{ids.min()}, {ids.max()}], outside the model's "
                         f"vocabulary [0, {vocabulary_size}); were they encoded with another tokenizer?")
    num_segments = getattr(getattr(model, "backbone", None), "num_segments", None)
    segments = arrays.get("segment_ids")
    if segments is not None and segments.size and (segments.min() < 0 or (num_segments and
                                                                         segments.max() >= num_segments)):
        raise ValueError(f"calibration segment_ids range over [{segments.min()}, {segments.max()}], outside the "
                         f"model's segments [0, {num_segments})")
    if "padding_mask" in arrays and not np.isin(arrays["padding_mask"], (0, 1)).all():
        raise ValueError("calibration padding_mask must hold only 0 and 1 (1 = real token)")
    if "padding_mask" in arrays and not arrays["padding_mask"].any(axis=1).all():
        raise ValueError("some calibration examples have no real token (padding_mask all 0)")
    return arrays


def representative_dataset(features: dict[str, np.ndarray], input_names, sequence_length: int | None = None):
    """A `TFLiteConverter.representative_dataset`: yields {input name: int32 (1, length)} per example.

    With a fixed `sequence_length` every example has that length; with None (dynamic-shape export) each is trimmed
    to its real tokens, the way `run_litert` feeds such a model.
    """
    names = tuple(input_names)
    n = len(features[names[0]])

    def generate():
        for i in range(n):
            if sequence_length:
                yield {name: features[name][i:i + 1].astype(np.int32) for name in names}
            else:
                mask = features.get("padding_mask")
                width = max(1, int(mask[i].sum())) if mask is not None else features[names[0]].shape[1]
                yield {name: features[name][i:i + 1, :width].astype(np.int32) for name in names}

    return generate


def _sample(n: int, steps: int, seed: int) -> np.ndarray:
    if n <= steps:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(steps), replace=False))


def _fit_length(x: np.ndarray, length: int) -> np.ndarray:
    if x.shape[1] >= length:
        return x[:, :length]
    return np.pad(x, ((0, 0), (0, length - x.shape[1])))
