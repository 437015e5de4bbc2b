"""The `export` stage: LiteRT files, each written only after it agrees with the Keras model on dev data."""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

from tfbertopt.data.pipeline import encode
from tfbertopt.export.verified import export_verified
from tfbertopt.quantizers.modes import MODES, names
from tfbertopt.stages.base import RecipeError, Stage, say
from tfbertopt.train import predict_logits

QUANTIZATION_CHOICES = names(recipe=True)
# The result tags of each variant (tfbertopt.quantizers.modes); the benchmark stage puts them on its rows.
VARIANT_TAGS = {name: list(mode.tags) for name, mode in MODES.items()}


class ExportStage(Stage):
    """Writes each LiteRT variant with `tfbertopt.export.export_verified`: only after it agrees with the Keras model
    on dev data (or with force: true), with a .json verification report."""

    name = "export"
    options: ClassVar[dict] = {
        "quantization": (["float32", "float16", "dynamic"], list,
                         "LiteRT variants: float32, float16, dynamic, int8 (full integer, calibrated on training "
                         "examples; after a qat stage its ranges come from training), int8-matmul (int8 matmuls with "
                         "per-channel output scales, float elsewhere; calibrated, or after a qat stage with target "
                         "int8-matmul from training), mixed (int8 with the most "
                         "sensitive ops float, Q-BERT style), int4 and int4-block32 (int4 kernels and embedding "
                         "tables, per channel or per 32 weights, float activations; after a qat stage with target "
                         "int4 its kernels are stored exactly; needs the int4 extra), dynamic-int4-tables (dynamic "
                         "with int4 embedding tables; needs the int4 extra)"),
        "calibration_steps": (100, int, "training examples that calibrate an int8 (or mixed) export"),
        "mixed_max_float_ops": (40, int, "mixed: Q-BERT-style budget, at most this many ops kept float (the most "
                                         "sensitive groups, measured on training examples)"),
        "mixed_holdout": (200, int, "mixed: training examples the sensitivity is measured on"),
        "sequence_length": (None, int, "fixed input length (default: the recipe's sequence_length)"),
        "verify_examples": (None, int, "verify each file on the first N dev examples (default: all)"),
        "min_agreement": (0.995, float, "quantized exports must agree with Keras on this share of labels"),
        "max_logit_diff": (1e-4, float, "float exports must match Keras logits this closely"),
        "force": (False, bool, "write files that fail verification anyway (their report says FAILED)"),
    }
    allowed: ClassVar[dict] = {"quantization": "list of: " + ", ".join(QUANTIZATION_CHOICES)}
    counts = ("verify_examples", "sequence_length")

    def check(self, path: str, options: dict) -> None:
        for q in options["quantization"]:
            if q not in QUANTIZATION_CHOICES:
                raise RecipeError(f"{path}.quantization: unknown '{q}'; choose from {QUANTIZATION_CHOICES}")

    def run(self, run, options: dict, stage_dir: str, train, dev, index: int) -> dict:
        seq = options["sequence_length"] or run.recipe["sequence_length"]
        examples = dev if options["verify_examples"] is None else dev.take(options["verify_examples"])
        features = encode(examples.texts, run.model.preprocessor)
        keras_logits = predict_logits(run.model, features)
        exports = []
        for q in options["quantization"]:
            say(f"export: {q} LiteRT at sequence length {seq}, verifying on {len(examples)} dev examples")
            result, report = export_verified(
                run.model, os.path.join(stage_dir, f"model_{q}.tflite"), examples, q, seq, force=options["force"],
                features=features, keras_logits=keras_logits, max_logit_diff=options["max_logit_diff"],
                min_agreement=options["min_agreement"],
                calibration=train if MODES[q].calibrated else None,
                calibration_steps=options["calibration_steps"], mixed_precision=None if q != "mixed" else {
                    "max_float_ops": options["mixed_max_float_ops"], "holdout": train,
                    "holdout_size": options["mixed_holdout"]})
            say(f"export: {result.path} {result.size_mb:.1f} MB: {report.summary()}")
            exports.append({"path": result.path, "quantization": q, "size_bytes": result.size_bytes,
                            "ops": dict(result.ops), "float_ops": result.float_op_count, "sequence_length": seq,
                            "dev_examples": len(examples),
                            "verification": dataclasses.asdict(report)})
        return {"exports": exports}
