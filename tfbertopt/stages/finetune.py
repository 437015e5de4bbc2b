"""The `finetune` stage: fine-tunes the model on the task."""

from __future__ import annotations

import os
from typing import ClassVar

from tfbertopt.stages.base import Stage, say
from tfbertopt.train import finetune


def finetune_options(epochs: int) -> dict:
    """The options of `tfbertopt.train.finetune` that a training stage exposes, with its default epoch count."""
    return {
        "epochs": (epochs, int, "passes over the training data"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (5e-5, float, "peak AdamW learning rate (linear warm-up, then linear decay)"),
        "weight_decay": (0.01, float, "AdamW weight decay (not on biases/LayerNorm)"),
        "warmup_fraction": (0.1, float, "share of steps spent warming up"),
        "max_steps": (None, int, "cap on steps per epoch"),
        "length_grouping": (20, int, "sort by length inside windows of N batches (1 = random batches)"),
        **KEEP_OPTION,
    }


KEEP_OPTION = {"keep": ("last", ("last", "best"), "the weights the stage ends with: the last epoch's, or those of "
                                                  "the epoch with the best dev headline metric (selected on dev)")}


class FinetuneStage(Stage):
    """Fine-tunes the model on the task through `tfbertopt.train.finetune` (AdamW, linear warm-up then decay, dev
    metrics each epoch); resumes at its epoch after a stopped run."""

    name = "finetune"
    options: ClassVar[dict] = finetune_options(epochs=2)
    counts = ("epochs", "batch_size", "max_steps", "length_grouping")
    trains = True

    def run(self, run, options: dict, stage_dir: str, train, dev, index: int) -> dict:
        say(f"finetune: {len(train)} train / {len(dev)} dev examples, {options['epochs']} epochs")
        history = finetune(run.model, train, dev, epochs=options["epochs"], batch_size=options["batch_size"],
                           learning_rate=options["learning_rate"], weight_decay=options["weight_decay"],
                           warmup_fraction=options["warmup_fraction"], max_steps=options["max_steps"],
                           length_grouping=options["length_grouping"], keep=options["keep"],
                           checkpoint_dir=os.path.join(stage_dir, "checkpoints"), seed=run.recipe["seed"],
                           verbose=2)
        logs = {k: [float(x) for x in v] for k, v in history.history.items()}
        return self.save_model(run, stage_dir, {"history": logs})
