"""Peer rows: ai-edge-quantizer's ready recipes applied to tfbertopt's float32 file, as a user of LiteRT's own
quantizer would, and Keras 3's own `quantize` applied to the Keras model, each verified like tfbertopt's rows.

`ai_edge_quantizer_rows(model, float_path, dev, out_dir)` writes `<out_dir>/<variant>_<recipe>.tflite` for each of
`PEERS` (so `tfbertopt.bench.retime` times them with the rest) and returns their results rows. The ready recipes
quantize FULLY_CONNECTED weights only: the converter's GATHER token table stays float. Needs ai-edge-quantizer
(`pip install 'tfbertopt[int4]'`).

`keras_quantize_rows(model, dev, out_dir)` does the same for each of `KERAS_MODES`: a copy of `model` whose backbone
Keras quantizes in place (`backbone.quantize(mode)`; the task's preprocessor cannot be quantized), exported by
`export_litert` with no quantization of its own (the kernels stay as Keras stores them) and verified against that
Keras copy. A mode the converter cannot take is a failure record with the copy's Keras dev score.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import warnings

from tfbertopt.bench import harness
from tfbertopt.data.pipeline import encode
from tfbertopt.evaluation import predictions_from_logits
from tfbertopt.export.litert import ExportResult, export_litert, op_counts
from tfbertopt.export.verify import verify_litert
from tfbertopt.kernels import count_params
from tfbertopt.metrics import primary_score
from tfbertopt.quantization import is_quantized
from tfbertopt.surgery import rebuild
from tfbertopt.train import predict_logits

# row variant -> ai-edge-quantizer's `recipe.<name>()`.
PEERS = {"aeq-dynamic-wi8": "dynamic_wi8_afp32", "aeq-dynamic-wi4": "dynamic_wi4_afp32",
         "aeq-dynamic-wi4b32": "dynamic_wi4b32_afp32"}
# row variant -> Keras' `quantize(mode)`.
KERAS_MODES = {"keras-int8": "int8", "keras-int4": "int4"}


def peer_file(float_path, recipe_name: str, out_path: str, sequence_length: int = 128) -> ExportResult:
    """ai-edge-quantizer's `recipe.<recipe_name>()` applied to the float32 LiteRT file at `float_path`."""
    from ai_edge_quantizer import quantizer, recipe

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = quantizer.Quantizer(str(float_path), getattr(recipe, recipe_name)()).quantize()
    data = bytes(result.quantized_model)
    with open(out_path, "wb") as f:
        f.write(data)
    return ExportResult(out_path, recipe_name, len(data), op_counts(data), sequence_length, ())


def ai_edge_quantizer_rows(model, float_path, dev, out_dir, baseline: str = "baseline", prefix: str = "",
                           tags: tuple = (), features=None, sequence_length: int = 128, log=print,
                           failures: list | None = None) -> list[dict]:
    """One verified row per `PEERS` recipe on `float_path` (the float32 export of `model`), named
    `<prefix><variant>`, tagged `ai-edge-quantizer`, `int4` or `ptq-dynamic`, and `tags`. A recipe that
    ai-edge-quantizer refuses for this model (e.g. blockwise-32 on a width not divisible by 32) gives no row; its
    one-line reason is logged and appended to `failures` as {"variant", "recipe", "error"}."""
    features = features if features is not None else encode(dev.texts, model.preprocessor)
    keras_logits = predict_logits(model, features)
    macs, params = harness.model_macs(model, sequence_length), count_params(model)
    rows = []
    for variant, recipe_name in PEERS.items():
        variant = prefix + variant
        log(f"{variant}: ai-edge-quantizer recipe.{recipe_name}() on {os.path.basename(str(float_path))}, verify")
        try:
            result = peer_file(float_path, recipe_name, os.path.join(str(out_dir), f"{variant}_{recipe_name}.tflite"),
                               sequence_length)
        except Exception as error:    # the peer's own refusal is a result, not a crash of the run
            message = _first_line(error)
            log(f"{variant}: ai-edge-quantizer refused: {message}")
            if failures is not None:
                failures.append({"variant": variant, "recipe": recipe_name, "error": message})
            continue
        report = verify_litert(result.path, model, dev, quantized=True, features=features, keras_logits=keras_logits)
        log(f"{variant}: {report.summary()}")
        row = harness.litert_row(variant, [*tags, "ai-edge-quantizer", "int4" if "wi4" in recipe_name else
                                           "ptq-dynamic"], baseline, result, report, dev.task.name, macs, params,
                                 None, None, None)
        row["dev_examples"] = len(dev)
        row["notes"] = f"ai-edge-quantizer {recipe_name}: FULLY_CONNECTED weights only (GATHER table stays float)"
        rows.append(row)
    return rows


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def keras_quantize_rows(model, dev, out_dir, baseline: str = "baseline", prefix: str = "", tags: tuple = (),
                        features=None, sequence_length: int = 128, log=print,
                        failures: list | None = None) -> list[dict]:
    """One verified row per `KERAS_MODES` mode, named `<prefix><variant>` and tagged `keras-quantize`, `int4` or
    `ptq-dynamic`, and `tags`; `model` itself is left float. A mode whose file does not convert gives no row: its
    one-line reason and the quantized copy's Keras dev score are logged and appended to `failures` as {"variant",
    "mode", "error", "keras_score"}."""
    if is_quantized(model):
        raise ValueError("keras_quantize_rows quantizes a float model with Keras; this one is already "
                         "quantization-aware (give the float model it was made from)")
    features = features if features is not None else encode(dev.texts, model.preprocessor)
    macs, params = harness.model_macs(model, sequence_length), count_params(model)
    rows = []
    for variant, mode in KERAS_MODES.items():
        variant = prefix + variant
        log(f"{variant}: Keras backbone.quantize({mode!r}) on a copy, export, verify")
        copy = rebuild(model)
        with warnings.catch_warnings():    # Keras warns once per layer it has no quantized form of
            warnings.simplefilter("ignore", UserWarning)
            copy.backbone.quantize(mode)
        keras_logits = predict_logits(copy, features)
        try:
            result = export_litert(copy, os.path.join(str(out_dir), f"{variant}_{mode}.tflite"), "float32",
                                   sequence_length)
        except Exception as error:    # the converter's refusal of Keras' graph is a result, not a crash of the run
            found = {"variant": variant, "mode": mode, "error": _first_line(error),
                     "keras_score": round(primary_score(dev.task, dev.labels,
                                                       predictions_from_logits(dev.task, keras_logits)), 4)}
            log(f"{variant}: no LiteRT file ({found['error'][:200]}); Keras dev score {found['keras_score']}")
            if failures is not None:
                failures.append(found)
            continue
        result = dataclasses.replace(result, quantization=mode)
        report = verify_litert(result.path, copy, dev, quantized=True, features=features, keras_logits=keras_logits)
        log(f"{variant}: {report.summary()}")
        row = harness.litert_row(variant, [*tags, "keras-quantize", "int4" if mode == "int4" else "ptq-dynamic"],
                                 baseline, result, report, dev.task.name, macs, params, None, None, None)
        row["dev_examples"] = len(dev)
        row["notes"] = (f"Keras {mode} quantize of the backbone, exported by tfbertopt with no quantization of its "
                        f"own: Keras' quantized layers dequantize their kernels in the graph")
        rows.append(row)
    return rows
