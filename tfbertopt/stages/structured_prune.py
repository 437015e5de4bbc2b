"""The `structured_prune` stage: removes the least important heads and FFN neurons (and layers) and shrinks."""

from __future__ import annotations

from typing import ClassVar

from tfbertopt.data.pipeline import encode
from tfbertopt.pruning.structured import (full_plan, plan_by_importance, plan_drop_layers, shrink,
                                          structure_importance)
from tfbertopt.stages.base import Stage, say
from tfbertopt.train import finetune


class StructuredPruneStage(Stage):
    """Scores attention heads and FFN neurons by importance (Michel et al.) on training batches, removes the least
    important share (and any named layers), physically shrinks the model, then optionally recovers by fine-tuning."""

    name = "structured_prune"
    options: ClassVar[dict] = {
        "head_fraction": (0.5, float, "share of attention heads to remove (least important first, across layers)"),
        "neuron_fraction": (0.5, float, "share of FFN neurons to remove"),
        "neuron_multiple": (1, int, "round each layer's kept FFN neurons to a multiple of this (2 for int4 kernels, "
                                    "32 for blockwise-32 int4)"),
        "drop_layers": (None, list, "1-based encoder layers to remove as well, e.g. [4, 6]"),
        "importance_batches": (32, int, "batches used to score heads and neurons"),
        "recovery_epochs": (1, int, "fine-tuning epochs after the shrink (0: none)"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (3e-5, float, "peak AdamW learning rate of the recovery"),
        "max_steps": (None, int, "cap on recovery steps per epoch"),
    }
    fractions = ("head_fraction", "neuron_fraction")
    counts = ("batch_size", "max_steps", "importance_batches", "neuron_multiple")
    non_negative = ("recovery_epochs",)
    trains = True

    def tags(self, options: dict) -> list[str]:
        parts = [("heads", options["head_fraction"]), ("ffn", options["neuron_fraction"]),
                 ("layers", options["drop_layers"])]
        return [tag for tag, value in parts if value] + ["structured", "shrink"]

    def run(self, run, options: dict, stage_dir: str, train, dev, index: int) -> dict:
        if options["head_fraction"] or options["neuron_fraction"] or options["neuron_multiple"] > 1:
            n = min(len(train), options["importance_batches"] * options["batch_size"])
            features = encode(train.texts[:n], run.model.preprocessor)
            scores = structure_importance(run.model, features, train.labels[:n], train.task,
                                          batches=options["importance_batches"], batch_size=options["batch_size"])
            plan = plan_by_importance(run.model, scores, options["head_fraction"], options["neuron_fraction"],
                                      neuron_multiple=options["neuron_multiple"])
        else:   # only whole layers go: nothing to rank or round
            plan = full_plan(run.model)
        if options["drop_layers"]:
            plan = plan_drop_layers(run.model, options["drop_layers"], plan)
        summary = plan.summary(run.model)
        say(f"structured_prune: keeping {summary}")
        run.model = shrink(run.model, plan)
        if options["recovery_epochs"]:
            finetune(run.model, train, dev, epochs=options["recovery_epochs"], batch_size=options["batch_size"],
                     learning_rate=options["learning_rate"], max_steps=options["max_steps"],
                     seed=run.recipe["seed"], verbose=2)
        return self.save_model(run, stage_dir, {"plan": summary, "tags": self.tags(options)})
