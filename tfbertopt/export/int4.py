"""int4 weights for LiteRT: every FULLY_CONNECTED kernel and every embedding table stored as 4-bit integers, with
float activations that the kernels quantize on the fly (dynamic range), builtin ops only.

TensorFlow's converter cannot write int4, so `export_litert(..., "int4")` converts the float32 graph and hands it to
ai-edge-quantizer (LiteRT's own weight quantizer, the optional `int4` extra): first the constant-table GATHERs
become EMBEDDING_LOOKUPs (`tfbertopt.export.embedding_lookup`), the lookup ai-edge-quantizer stores in int4, then
one dynamic-range recipe quantizes the FULLY_CONNECTED kernels and the tables:

| mode | scales | grid |
| --- | --- | --- |
| "int4" | one per output channel (kernel) or per row (table) | symmetric, scale = max abs / 7 |
| "int4-block32" | one float16 scale per 32 consecutive input weights | symmetric, scale = max abs / 7 |

A model trained with `QuantizationConfig.for_export("int4")` has kernels already on the per-channel int4 grid
(scale = max abs / 7, as here), so "int4" stores its trained weights exactly. Which layouts LiteRT runs fast, and
what post-training int4 costs in accuracy, is measured in `benchmarks/results/sst2_int4.json` (docs/quantization.md).

Example:

>>> import os, tempfile
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.export.litert import export_litert
>>> clf = tiny_bert_classifier(["good", "bad"], sequence_length=16)
>>> result = export_litert(clf, os.path.join(tempfile.mkdtemp(), "m.tflite"), "int4", sequence_length=16)
>>> sorted(kind for kind in result.ops if kind in ("EMBEDDING_LOOKUP", "GATHER", "FULLY_CONNECTED"))
['EMBEDDING_LOOKUP', 'FULLY_CONNECTED']
"""

from __future__ import annotations

import contextlib
import io
import logging

from tfbertopt.export.embedding_lookup import gathers_as_embedding_lookups

logger = logging.getLogger(__name__)

GRANULARITY = {"int4": "CHANNELWISE", "int4-block32": "BLOCKWISE_32"}
QUANTIZED_OPS = ("FULLY_CONNECTED", "EMBEDDING_LOOKUP")


class Int4Error(RuntimeError):
    """int4 weights cannot be written (ai-edge-quantizer missing or failing)."""


def int4_recipe(quantization: str) -> list[dict]:
    """ai-edge-quantizer's recipe for `quantization` ("int4" or "int4-block32"): dynamic-range int4 weights of
    every FULLY_CONNECTED and EMBEDDING_LOOKUP."""
    if quantization not in GRANULARITY:
        raise ValueError(f"int4 quantization must be one of {sorted(GRANULARITY)}, got {quantization!r}")
    from ai_edge_quantizer import qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    for op in QUANTIZED_OPS:
        manager.add_dynamic_config(".*", qtyping.TFLOperationName[op], 4,
                                   granularity=qtyping.QuantGranularity[GRANULARITY[quantization]])
    return manager.get_quantization_recipe()


def int4_weights(float_flatbuffer: bytes, quantization: str = "int4") -> bytes:
    """The float32 LiteRT flatbuffer `float_flatbuffer` with int4 weights (see the module docstring)."""
    try:
        from ai_edge_quantizer import quantizer
    except ImportError as error:
        raise Int4Error(f"quantization={quantization!r} needs ai-edge-quantizer (LiteRT's weight quantizer): "
                        f"pip install 'tfbertopt[int4]'") from error
    recipe = int4_recipe(quantization)
    rewritten, lookups = gathers_as_embedding_lookups(float_flatbuffer)
    logger.info("%s: %d embedding tables as EMBEDDING_LOOKUP", quantization, lookups)
    chatter = io.StringIO()   # ai-edge-quantizer prints progress bars and a size summary
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            result = quantizer.Quantizer(bytearray(rewritten), recipe).quantize()
    except Exception as error:
        raise Int4Error(f"ai-edge-quantizer could not write {quantization!r}: {error}") from error
    logger.debug("ai-edge-quantizer: %s", chatter.getvalue())
    return bytes(result.quantized_model)
