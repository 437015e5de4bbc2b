"""LiteRT (TFLite) export of keras-hub classifiers: builtin ops only, named signature, weights embedded.

The model's serving function is traced once and saved as a SavedModel together with the variables it reads, then
converted from it; converting a `tf.function` that merely calls a Keras 3 model, without saving its variables,
leaves the weights as uninitialised resource variables and gives an all-NaN file without any error (see the
verifier, which catches that too).

Signature `serving_default`: int32 inputs `token_ids`, `padding_mask` (1 = real token) and, where the model has
them, `segment_ids`, of shape (1, sequence_length) or (None, None) when `sequence_length=None`; outputs `logits`
and `probabilities` (softmax; for regression tasks both are the raw score). Every quantization keeps this
signature: inputs stay int32 and outputs float32.

Quantizations:

- "float32": no quantization.
- "float16": fp16 weights, float32 computation.
- "dynamic": dynamic-range int8 (int8 weights, float activations quantized on the fly inside matmuls).
- "int8": full integer post-training quantization: int8 weights (per channel) and int8 activations whose ranges
  come from a calibration set, builtin int8 kernels only (`TFLITE_BUILTINS_INT8`); the graph quantizes after the
  embedding lookup and dequantizes before the float outputs. Ops the converter cannot run in int8 stay float
  between DEQUANTIZE/QUANTIZE: `ExportResult.op_report` lists them. Attention is traced with a row-relative mask
  floor instead of Keras' -1e9, which would otherwise make every int8 attention head uniform
  (`tfbertopt.export.attention_masking`). A quantization-aware trained model (`tfbertopt.quantization`) carries
  its trained activation ranges as fake-quant ops; the converter keeps them and calibrates only the tensors
  training did not range (inside LayerNorm and GELU).
- "int4", "int4-block32": int4 weights (per channel, or per 32 input weights) for every FULLY_CONNECTED and
  embedding table, float activations quantized on the fly inside the matmuls; written by ai-edge-quantizer, LiteRT's
  own weight quantizer (the optional `int4` extra), from the float32 graph (`tfbertopt.export.int4`).
- "dynamic-int4-tables": as "dynamic" (int8 kernels, per channel), with the embedding tables in int4 (per row);
  written by ai-edge-quantizer the same way.
- "16x8": int16 activations with int8 weights (`EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`),
  ops without an int16 kernel falling back to float. Traced with plain embedding gathers and a MUL-based LayerNorm
  (`tfbertopt.export.integer_tracing`): Keras' own forms give int32 index arithmetic the int16 quantizer cannot range
  and an int16 SQUARED_DIFFERENCE the runtime cannot run. "int8" is traced the same way by default
  (`trace_form="integer"`): LiteRT runs int8 SQUARED_DIFFERENCE in a slow builtin kernel, SUB/MUL in XNNPACK.
- "int8-matmul": static int8 where the MACs are, float elsewhere. Every FULLY_CONNECTED (and the embedding
  gathers) is int8 with calibrated activation ranges; attention, softmax, GELU, LayerNorm and the residual sums
  stay float. Matmuls with outlier output channels (BERT's FFN outputs) get per-channel output scales
  (`tfbertopt.export.channel_equalization`), which int8's one scale per tensor cannot express. No attention-mask
  floor is needed: the softmax input is float. A model trained with
  `quantize_model(model, QuantizationConfig.for_export("int8-matmul"))` exports the same graph with its trained
  ranges and output scales (the calibration set then ranges only the classifier's logits); a model trained for the
  other graph is refused.

"int8", "16x8" and "int8-matmul" need `calibration=`: a feature dict from `tfbertopt.data.pipeline.encode` or GLUE `Examples`
(tokenized with the model's preprocessor), of which `calibration_steps` examples (100 by default) are fed one at a
time, padded to `sequence_length` (see `tfbertopt.data.calibration`).

Example:

>>> import tempfile, os
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.export.litert import export_litert
>>> clf = tiny_bert_classifier(["good", "bad"], sequence_length=16)
>>> result = export_litert(clf, os.path.join(tempfile.mkdtemp(), "m.tflite"), quantization="dynamic",
...                        sequence_length=16)
>>> "FULLY_CONNECTED" in result.ops
True
>>> from tfbertopt.data.demo import demo_examples
>>> clf = tiny_bert_classifier(["good", "bad"], sequence_length=16)
>>> int8 = export_litert(clf, os.path.join(tempfile.mkdtemp(), "m_int8.tflite"), quantization="int8",
...                      sequence_length=16, calibration=demo_examples("train", 32))
>>> int8.op_report.counts["FULLY_CONNECTED"]["int8"] > 0
True
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import re
import tempfile

import numpy as np

from tfbertopt.data.calibration import calibration_features, representative_dataset
from tfbertopt.data.pipeline import model_input_names, without_preprocessor
from tfbertopt.export.attention_masking import additive_masking, quantization_friendly_masking
from tfbertopt.export.channel_equalization import equalized_matmuls
from tfbertopt.export.int4 import Int4Error, int4_weights
from tfbertopt.export.integer_tracing import integer_friendly_ops
from tfbertopt.export.op_report import op_report
from tfbertopt.quantization.qat import activation_ranges, quantization_config, uninitialized_quantizers
from tfbertopt.quantizers.channel_scales import equalization_scales, matmul_ranges
from tfbertopt.quantizers.config import TARGETS
from tfbertopt.quantizers.modes import names


logger = logging.getLogger(__name__)

# From the one registry of modes (`tfbertopt.quantizers.modes`).
QUANTIZATIONS = names(litert=True)
CALIBRATED = names(litert=True, calibrated=True)
FULL_INTEGER = names(litert=True, integer_softmax=True)   # whose softmax (and so its input's mask) is integer
INT4 = names(writer="ai-edge-quantizer")   # written by ai-edge-quantizer from the float32 graph
# "int8-matmul" quantizes these op kinds only (QUANTIZE/DEQUANTIZE are the conversions around them).
MATMUL_INT8_OPS = ("FULLY_CONNECTED", "GATHER", "QUANTIZE", "DEQUANTIZE")


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
    op_report: object | None = None  # tfbertopt.export.op_report.OpReport, for the calibrated modes

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6

    @property
    def float_op_count(self) -> int | None:
        """Ops left in float in a calibrated export (None for the other modes; int8-matmul keeps most ops float
        by design)."""
        return None if self.op_report is None else self.op_report.float_op_count


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


def convert_saved_model(saved_model_dir, quantization, representative_dataset=None, calibrate_only: bool = False):
    """Convert a SavedModel (from `saved_model`) to a LiteRT flatbuffer of `quantization`, builtin ops only.

    The one converter set-up of every export. With `calibrate_only` (a calibrated mode), it returns the float
    graph with its calibrated ranges, to be quantized later (as int8-matmul and `MixedPrecision` do). Raises
    `ExportError` naming the TensorFlow ops without a builtin kernel, or the tensor 16x8 cannot range.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization in CALIBRATED:
        if representative_dataset is None:
            raise ValueError(f"quantization='{quantization}' needs a representative dataset")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        # Inputs stay int32 token data and outputs float32 (the converter's defaults): the signature is unchanged.
        # 16x8: ops without an int16 kernel (the CAST of the padding mask) fall back to float builtins.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] if quantization != "16x8" else [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        # int8-matmul: calibrate the float graph, then quantize only the matmul op kinds.
        converter._experimental_calibrate_only = calibrate_only or quantization == "int8-matmul"  # noqa: SLF001
    try:
        flatbuffer = converter.convert()
        if quantization in INT4:   # the float32 graph, its weights written in int4 by ai-edge-quantizer
            return int4_weights(flatbuffer, quantization)
        if quantization == "int8-matmul" and not calibrate_only:
            return quantize_op_kinds(flatbuffer, MATMUL_INT8_OPS)
        return flatbuffer
    except Int4Error as e:
        raise ExportError(str(e)) from e
    except Exception as e:  # the converter raises ConverterError with the unsupported ops in its text
        empty_range = re.search(r"Empty min/max for tensor (\S+)", str(e))
        if quantization == "16x8" and empty_range:
            raise ExportError(
                f"quantization='16x8' is not possible for this graph: LiteRT's int16-activation quantizer wants a "
                f"calibrated range for the integer tensor {empty_range.group(1)} (the int32 index arithmetic in "
                f"front of the embedding lookup), and calibration records ranges of float tensors only. "
                f"Use quantization='int8' (full integer) or 'dynamic'."
            ) from e
        ops = sorted(set(re.findall(r"\btf\.(\w+)", str(e))))
        if ops:
            raise ExportError(
                f"the model uses TensorFlow ops that LiteRT has no builtin kernel for: {ops}. tfbertopt exports "
                f"builtin ops only (no Flex/SELECT_TF_OPS, which most mobile runtimes lack)."
            ) from e
        raise ExportError(f"LiteRT conversion failed: {e}") from e


def quantize_op_kinds(calibrated: bytes, int8_ops=MATMUL_INT8_OPS) -> bytes:
    """Quantizes a calibrated-only flatbuffer, leaving every op kind outside `int8_ops` float."""
    from tensorflow.lite.python import convert

    kinds = set(op_counts(calibrated))
    return convert.mlir_quantize(calibrated, denylisted_ops=sorted(kinds - set(int8_ops)) or None)


@contextlib.contextmanager
def saved_model(model, sequence_length: int | None, quantization: str = "float32", attention_masking: str = "auto",
                trace_form: str = "auto"):
    """A temporary SavedModel of `model`'s `serving_default` signature, traced in the graph form `quantization`
    converts well: attention masks with a row-relative floor in integer modes and with an additive bias where the
    softmax runs in float ("auto"; or `attention_masking` "floor", "additive", "keras"), and, with
    `trace_form` "auto" or "integer", use plain embedding gathers and a MUL-based LayerNorm (`integer_tracing`;
    "keras" keeps Keras' forms, which 16x8 cannot run). Yields (folder, input names)."""
    import tensorflow as tf

    with without_preprocessor(model):
        input_names = model_input_names(model)
        num_classes = int(model.output.shape[-1]) if hasattr(model, "output") else model.num_classes
        shape = (1, sequence_length) if sequence_length else (None, None)
        signature = [tf.TensorSpec(shape, tf.int32, name=name) for name in input_names]
        masking = {"floor": quantization_friendly_masking, "additive": additive_masking,
                   "keras": contextlib.nullcontext}[resolve_masking(attention_masking, quantization)]()
        integer = quantization == "16x8" or (quantization in CALIBRATED and trace_form in ("auto", "integer"))
        forms = integer_friendly_ops() if integer else contextlib.nullcontext()
        with masking, forms, tempfile.TemporaryDirectory() as tmp:
            # A bare module holding the traced signature and the variables it reads: the model's layers are not
            # tracked, so a task's detached preprocessor (BPE/SentencePiece lookup tables, which LiteRT cannot run)
            # stays out, and nothing is traced twice (Keras' ExportArchive walks and re-traces every layer; the
            # .tflite files are byte-identical, a third faster to write).
            serve = tf.function(_serving_function(model, input_names, num_classes), input_signature=signature)
            concrete = serve.get_concrete_function()
            module = tf.Module()
            module.serve, module.captured_variables = serve, list(concrete.variables)
            tf.saved_model.save(module, tmp, signatures={"serving_default": concrete})
            yield tmp, input_names


MASKINGS = ("auto", "floor", "additive", "keras")


def resolve_masking(attention_masking: str, quantization: str) -> str:
    """The attention masking an export traces: "auto" is the floor where the softmax is integer, else additive."""
    if attention_masking not in MASKINGS:
        raise ValueError(f"attention_masking must be one of {MASKINGS}, got {attention_masking!r}")
    integer_softmax = quantization in FULL_INTEGER
    if attention_masking == "auto":
        return "floor" if integer_softmax else "additive"
    if attention_masking == "additive" and integer_softmax:
        raise ValueError(f"attention_masking='additive' puts -1e9 into the integer softmax input of a "
                         f"quantization='{quantization}' export, whose one int8 scale then makes every attention head "
                         f"uniform; use 'floor' (the default there)")
    return attention_masking


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
    calibration=None,
    calibration_steps: int = 100,
    attention_masking: str = "auto",
    trace_form: str = "auto",
    min_spread: float | None = 8.0,
) -> ExportResult:
    """Writes `model` as a .tflite file with builtin ops only.

    Args:
      model: a keras-hub BERT-family classifier (its preprocessor is not exported: tokenize outside).
      path: output .tflite path.
      quantization: "float32", "float16" (weights in fp16), "dynamic" (dynamic-range int8 weights), "int8"
        (full integer, calibrated), "int8-matmul" (int8 matmuls, float elsewhere, calibrated), "16x8" (int16
        activations, int8 weights, calibrated), "int4" or "int4-block32" (dynamic-range int4 weights),
        "dynamic-int4-tables" (dynamic-range int8 kernels, int4 embedding tables).
      sequence_length: fixed input length with batch 1, or None for dynamic (batch, length).
      calibration: for "int8"/"16x8"/"int8-matmul": a feature dict from `encode` or GLUE `Examples` (ignored
        otherwise).
      calibration_steps: how many calibration examples to use (a seeded sample when there are more).
      attention_masking: "auto" (default): "floor" for "int8"/"16x8", which masks padded keys with a row-relative
        floor that int8 can represent, and "additive" elsewhere, which adds 0/-1e9 to the scores (one broadcast
        ADD instead of Keras' two SELECTs, which run outside XNNPACK; refused for "int8"/"16x8"); "floor" also
        applies to float modes when asked for; "keras" keeps Keras' masking (in int8 its -1e9 makes attention
        uniform: for comparison only). See `tfbertopt.export.attention_masking`.
      trace_form: for "int8" and "int8-matmul": "auto"/"integer" (default) traces plain embedding gathers and a MUL-based LayerNorm,
        which LiteRT runs in XNNPACK; "keras" keeps Keras' ops (int8 SQUARED_DIFFERENCE, negative-id wrap), for
        comparison. "16x8" always uses the integer forms (it cannot run Keras').
      min_spread: for "int8-matmul": matmuls whose output channel ranges spread by more than this (max / median)
        get per-channel output scales (`channel_equalization`); None: none do.

    Raises:
      ExportError: a non-builtin (Flex/custom) op, or a failed conversion; the message names the ops.
      ValueError: an unknown quantization, or a missing/malformed calibration set for "int8"/"16x8".
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization '{quantization}'; choose one of {QUANTIZATIONS}")
    resolve_masking(attention_masking, quantization)
    if trace_form not in ("auto", "integer", "keras"):
        raise ValueError(f"trace_form must be 'auto', 'integer' or 'keras', got {trace_form!r}")
    if quantization in CALIBRATED and calibration is None:
        raise ValueError(f"quantization='{quantization}' needs a calibration set: pass calibration= a feature dict "
                         f"from tfbertopt.data.pipeline.encode or GLUE Examples (e.g. 100 training examples)")

    trained = quantization_config(model)
    if trained is not None and quantization in TARGETS and trained.export_target != quantization:
        wanted = trained.export_target
        raise ValueError(f"this quantization-aware model was trained for the {wanted!r} graph (fake-quant points "
                         f"{list(trained.points)}); export it with quantization='{wanted}', which keeps its trained "
                         f"ranges, or train it with QuantizationConfig.for_export('{quantization}')")

    empty = uninitialized_quantizers(model)
    if empty:
        raise ExportError(f"{len(empty)} activation quantizers of this quantization-aware model have never seen data "
                          f"(e.g. {empty[:3]}), so their ranges are empty: train it, or call "
                          f"tfbertopt.quantization.calibrate_ranges(model, examples) before exporting")
    broken = [p for p, r in activation_ranges(model).items() if not np.all(np.isfinite(r))]
    if broken:
        raise ExportError(f"{len(broken)} trained activation ranges are not finite (e.g. {broken[:3]}): the "
                          f"quantization-aware model diverged; retrain or recalibrate it before exporting")
    representative = None
    if quantization in CALIBRATED:
        with without_preprocessor(model):
            names = model_input_names(model)
        features = calibration_features(calibration, model, names, sequence_length, calibration_steps)
        representative = representative_dataset(features, names, sequence_length)
    equalization = contextlib.nullcontext()
    if quantization == "int8-matmul" and trained is not None:
        # Trained ranges and output scales are in the graph (fake-quant ops, `output_scale`); the calibration set
        # only ranges what training did not: the logits of keras-hub's (float) classifier head.
        logger.info("int8-matmul: quantization-aware model, %d trained activation ranges",
                    len(activation_ranges(model)))
    elif quantization == "int8-matmul":
        with without_preprocessor(model):
            scales = {} if min_spread is None else equalization_scales(model, matmul_ranges(model, features),
                                                                       min_spread)
        logger.info("int8-matmul: per-channel output scales for %d matmuls", len(scales))
        equalization = equalized_matmuls(scales)
    elif calibration is not None:
        logger.info("calibration= is only used by %s; ignored for quantization='%s'", CALIBRATED, quantization)
    with equalization, saved_model(model, sequence_length, quantization, attention_masking, trace_form) as (
            tmp, input_names):
        flatbuffer = convert_saved_model(tmp, quantization, representative)
    ops = op_counts(flatbuffer)
    foreign = sorted(op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE"))
    if foreign:
        raise ExportError(f"exported model contains non-builtin ops {foreign}; refusing to write {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    logger.info("wrote %s (%s, %.1f MB)", path, quantization, len(flatbuffer) / 1e6)
    report = None
    if quantization in CALIBRATED:
        report = op_report(path)
        logger.info("%s: %d of %d ops stayed float", path, report.float_op_count, len(report.ops))
    return ExportResult(str(path), quantization, len(flatbuffer), ops, sequence_length, input_names, report)
