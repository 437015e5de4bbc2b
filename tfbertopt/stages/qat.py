"""The `qat` stage: quantization-aware fine-tuning for a quantized LiteRT graph."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from tfbertopt.evaluation import evaluate
from tfbertopt.quantization import QuantizationConfig, activation_ranges, quantize_model
from tfbertopt.quantizers.config import POINTS, TARGETS
from tfbertopt.stages.base import RecipeError, Stage, say
from tfbertopt.stages.finetune import KEEP_OPTION
from tfbertopt.train import finetune


class QatStage(Stage):
    """Quantization-aware fine-tuning: int8 fake-quant at the tensors the target LiteRT graph quantizes, ranges
    started from a calibration pass, then trained (optionally distilled from the float model, with finetune's default
    loss: 0.5 hard labels + 0.5 KL at T=2, as factorize's distill_recovery); the export stage after it uses the
    trained ranges."""

    name = "qat"
    options: ClassVar[dict] = {
        "target": ("int8", str, "the LiteRT graph trained for (and the export it takes): int8 (full integer), "
                                "int8-matmul (int8 matmuls with per-channel output scales where the channels "
                                "spread, float elsewhere), int4 (4-bit per-channel kernels and per-row "
                                "tables, float activations), int4-block32 (the same, one scale per 32 weights) "
                                "or dynamic-int4-tables (8-bit kernels, 4-bit tables)"),
        "points": (None, list, "activations that carry an int8 fake-quant (see "
                               "tfbertopt.quantization.QuantizationConfig); default: the target's"),
        "learned_weight_scales": (False, bool, "train each kernel channel's scale (a clip of its max |w|, started "
                                               "at the least-squares one; LSQ) instead of tracking max |w|; "
                                               "per-channel targets only"),
        "symmetric_activations": (False, bool, "symmetric activation ranges (Q8BERT) instead of LiteRT's asymmetric"),
        "ema_decay": (0.99, float, "decay of the moving averages of activation min/max"),
        "calibration_steps": (100, int, "training examples whose min/max start the activation ranges"),
        "distill": (False, bool, "add the float model's logits as a teacher (0.5 hard labels + 0.5 KL at T=2)"),
        "epochs": (1, int, "quantization-aware fine-tuning epochs; 0: quantize and calibrate only (the fake-quant "
                           "twin of the post-training file, for a later stage to train, e.g. distill with "
                           "student: previous)"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (2e-5, float, "peak AdamW learning rate"),
        "max_steps": (None, int, "cap on steps per epoch"),
        **KEEP_OPTION,
    }
    allowed: ClassVar[dict] = {"target": " | ".join(TARGETS), "points": "list of: " + ", ".join(POINTS)}
    counts = ("batch_size", "max_steps")
    non_negative = ("epochs",)
    trains = True

    def check(self, path: str, options: dict) -> None:
        if options["target"] not in TARGETS:
            raise RecipeError(f"{path}.target: unknown '{options['target']}'; choose from {list(TARGETS)}")
        points = options["points"]
        if points is not None:     # None: the target's points
            unknown = [p for p in points if p not in POINTS]
            if unknown or not points:
                raise RecipeError(f"{path}.points: unknown {unknown or 'empty list'}; choose from {list(POINTS)}")
        if not 0.0 <= options["ema_decay"] < 1.0:
            raise RecipeError(f"{path}.ema_decay: must be in [0, 1), got {options['ema_decay']}")
        try:                  # the scheme's own checks (e.g. learned scales are per channel, not blockwise)
            _config(options)
        except ValueError as e:
            raise RecipeError(f"{path}: {e}") from None

    def tags(self, options: dict) -> list[str]:
        return ["qat"] + (["learned-scales"] if options["learned_weight_scales"] else [])

    def run(self, run, options: dict, stage_dir: str, train, dev, index: int) -> dict:
        config = _config(options)
        tables = f"{config.table_bits}-bit tables, " if config.table_bits else ""
        scales = " (learned scales)" if config.learned_weight_scales else ""
        activations = (f"{config.activation_bits}-bit fake-quant at {', '.join(config.points)}, ranges from "
                       f"{options['calibration_steps']} training examples" if config.points else "float activations")
        say(f"qat for the {options['target']} graph: {config.weight_bits}-bit kernels{scales}, {tables}{activations}")
        teacher = run.model
        run.model = quantize_model(run.model, config, calibration=train,
                                   calibration_steps=options["calibration_steps"])
        outputs = {"tags": self.tags(options), "activation_ranges": len(activation_ranges(run.model))}
        if not options["epochs"]:
            outputs["dev"] = evaluate(run.model, dev)
            say(f"qat: epochs 0, the quantization-aware model is saved untrained (dev {outputs['dev']})")
            return self.save_model(run, stage_dir, outputs)
        history = finetune(run.model, train, dev, epochs=options["epochs"], batch_size=options["batch_size"],
                           learning_rate=options["learning_rate"], max_steps=options["max_steps"],
                           seed=run.recipe["seed"], verbose=2, teacher=teacher if options["distill"] else None,
                           keep=options["keep"])
        outputs["history"] = {k: [float(x) for x in v] for k, v in history.history.items()}
        return self.save_model(run, stage_dir, outputs)


def _config(options: dict) -> QuantizationConfig:
    """The stage's QuantizationConfig: the target's scheme with the stage's options."""
    config = QuantizationConfig.for_export(options["target"])
    return dataclasses.replace(config, points=tuple(options["points"] or config.points),
                               ema_decay=options["ema_decay"], learned_weight_scales=options["learned_weight_scales"],
                               symmetric_activations=options["symmetric_activations"])
