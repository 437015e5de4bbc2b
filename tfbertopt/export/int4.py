"""int4 weights for LiteRT: every embedding table, and in "int4" / "int4-block32" every FULLY_CONNECTED kernel too,
stored as 4-bit integers, with float activations that the kernels quantize on the fly (dynamic range), builtin ops
only.

TensorFlow's converter cannot write int4, so `export_litert(..., "int4")` converts the float32 graph and hands it to
ai-edge-quantizer (LiteRT's own weight quantizer, the optional `int4` extra): first the constant-table GATHERs
become EMBEDDING_LOOKUPs (`tfbertopt.export.embedding_lookup`), the lookup ai-edge-quantizer stores in int4, then
one dynamic-range recipe quantizes the FULLY_CONNECTED kernels and the tables (`LAYOUTS`):

| mode | kernels | tables | scales |
| --- | --- | --- | --- |
| "int4" | int4 | int4 | one per output channel (kernel) or per row (table); scale = max abs / 7 |
| "int4-block32" | int4 | int4 | one float16 scale per 32 consecutive input weights; scale = max abs / 7 |
| "dynamic-int4-tables" | int8 | int4 | one per output channel or row; scale = max abs / 127 (kernels), / 7 (tables) |

"dynamic-int4-tables" is the converter's "dynamic" with the tables at half its size: the kernels keep int8's
accuracy, and a token table (half of a small BERT's bytes) costs 4 bits a weight.

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

# mode -> {op: (weight bits, ai-edge-quantizer granularity)}
LAYOUTS = {
    "int4": {"FULLY_CONNECTED": (4, "CHANNELWISE"), "EMBEDDING_LOOKUP": (4, "CHANNELWISE")},
    "int4-block32": {"FULLY_CONNECTED": (4, "BLOCKWISE_32"), "EMBEDDING_LOOKUP": (4, "BLOCKWISE_32")},
    "dynamic-int4-tables": {"FULLY_CONNECTED": (8, "CHANNELWISE"), "EMBEDDING_LOOKUP": (4, "CHANNELWISE")},
}


class Int4Error(RuntimeError):
    """int4 weights cannot be written (ai-edge-quantizer missing or failing)."""


def int4_recipe(quantization: str) -> list[dict]:
    """ai-edge-quantizer's recipe for `quantization` (a mode of `LAYOUTS`): dynamic-range weights of every
    FULLY_CONNECTED and EMBEDDING_LOOKUP, in that mode's bits and granularity."""
    if quantization not in LAYOUTS:
        raise ValueError(f"int4 quantization must be one of {sorted(LAYOUTS)}, got {quantization!r}")
    from ai_edge_quantizer import qtyping, recipe_manager

    manager = recipe_manager.RecipeManager()
    for op, (bits, granularity) in LAYOUTS[quantization].items():
        manager.add_dynamic_config(".*", qtyping.TFLOperationName[op], bits,
                                   granularity=qtyping.QuantGranularity[granularity])
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
