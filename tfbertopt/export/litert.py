"""LiteRT (TFLite) export of keras-hub classifiers: builtin ops only, named signature, weights embedded.

The model is tracked through `keras.export.ExportArchive` and converted from the SavedModel; converting a
`tf.function` that merely calls a Keras 3 model leaves its weights as uninitialised resource variables and gives an
all-NaN file without any error (see the verifier, which catches that too).

Signature `serving_default`: int32 inputs `token_ids`, `padding_mask` (1 = real token) and, where the model has
them, `segment_ids`, of shape (1, sequence_length) or (None, None) when `sequence_length=None`; outputs `logits`
and `probabilities` (softmax; for regression tasks both are the raw score).

Example:

>>> import tempfile, os
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.export.litert import export_litert
>>> clf = tiny_bert_classifier(["good", "bad"], sequence_length=16)
>>> result = export_litert(clf, os.path.join(tempfile.mkdtemp(), "m.tflite"), quantization="dynamic",
...                        sequence_length=16)
>>> "FULLY_CONNECTED" in result.ops
True
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import re
import tempfile

import keras
import numpy as np

from tfbertopt.data.pipeline import FEATURES, without_preprocessor

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("float32", "float16", "dynamic")


class ExportError(RuntimeError):
    """Conversion failed or produced a model that cannot run on LiteRT's builtin ops."""


@dataclasses.dataclass
class ExportResult:
    path: str
    quantization: str
    size_bytes: int
    ops: collections.Counter
    sequence_length: int | None
    input_names: tuple

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


def model_input_names(model) -> tuple:
    """The classifier's token inputs, in FEATURES order (DistilBERT/RoBERTa have no segment_ids)."""
    names = {t.name.split(":")[0] for t in model.inputs} if isinstance(model.inputs, list) else set(model.inputs)
    return tuple(n for n in FEATURES if n in names)


def _serving_function(model, input_names, num_classes):
    import tensorflow as tf

    def outputs(inputs):
        x = {name: tf.cast(inputs[name], "int32") for name in input_names}
        logits = tf.cast(model(x, training=False), tf.float32)
        probabilities = logits if num_classes == 1 else tf.nn.softmax(logits, axis=-1)
        return {"logits": logits, "probabilities": probabilities}

    # TFLite names signature inputs after the Python arguments, so the function spells them out.
    if "segment_ids" in input_names:
        def serve(token_ids, padding_mask, segment_ids):
            return outputs({"token_ids": token_ids, "padding_mask": padding_mask, "segment_ids": segment_ids})
    else:
        def serve(token_ids, padding_mask):
            return outputs({"token_ids": token_ids, "padding_mask": padding_mask})
    return serve


def _convert(saved_model_dir, quantization):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        return converter.convert()
    except Exception as e:  # the converter raises ConverterError with the unsupported ops in its text
        ops = sorted(set(re.findall(r"\btf\.(\w+)", str(e))))
        if ops:
            raise ExportError(
                f"the model uses TensorFlow ops that LiteRT has no builtin kernel for: {ops}. tfbertopt exports "
                f"builtin ops only (no Flex/SELECT_TF_OPS, which most mobile runtimes lack)."
            ) from e
        raise ExportError(f"LiteRT conversion failed: {e}") from e


def op_counts(path_or_bytes) -> collections.Counter:
    """Operator names of a .tflite model and how often each occurs."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_content": path_or_bytes} if isinstance(path_or_bytes, bytes) else {"model_path": str(path_or_bytes)}
    interpreter = Interpreter(**kwargs)
    return collections.Counter(op["op_name"] for op in interpreter._get_ops_details())


def export_litert(
    model,
    path: str | os.PathLike,
    quantization: str = "float32",
    sequence_length: int | None = 128,
) -> ExportResult:
    """Writes `model` as a .tflite file with builtin ops only.

    Args:
      model: a keras-hub BERT-family classifier (its preprocessor is not exported: tokenize outside).
      path: output .tflite path.
      quantization: "float32", "float16" (weights in fp16) or "dynamic" (dynamic-range int8 weights).
      sequence_length: fixed input length with batch 1, or None for dynamic (batch, length).

    Raises:
      ExportError: a non-builtin (Flex/custom) op, or a failed conversion; the message names the ops.
      ValueError: an unknown quantization.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization '{quantization}'; choose one of {QUANTIZATIONS}")
    with without_preprocessor(model):
        input_names = model_input_names(model)
        num_classes = int(model.output.shape[-1]) if hasattr(model, "output") else model.num_classes
        shape = (1, sequence_length) if sequence_length else (None, None)
        signature = [tf.TensorSpec(shape, tf.int32, name=name) for name in input_names]
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", _serving_function(model, input_names, num_classes),
                             input_signature=signature)
        with tempfile.TemporaryDirectory() as tmp:
            archive.write_out(tmp, verbose=False)
            flatbuffer = _convert(tmp, quantization)
    ops = op_counts(flatbuffer)
    foreign = sorted(op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE"))
    if foreign:
        raise ExportError(f"exported model contains non-builtin ops {foreign}; refusing to write {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    logger.info("wrote %s (%s, %.1f MB)", path, quantization, len(flatbuffer) / 1e6)
    return ExportResult(str(path), quantization, len(flatbuffer), ops, sequence_length, input_names)
