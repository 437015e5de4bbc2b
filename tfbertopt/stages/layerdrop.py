"""The `layerdrop` stage: fine-tunes with LayerDrop, then removes layers."""

from __future__ import annotations

from typing import ClassVar

from tfbertopt.pruning.structured import plan_drop_layers, shrink, with_layerdrop
from tfbertopt.stages.base import Stage, say
from tfbertopt.train import finetune


class LayerDropStage(Stage):
    """Fine-tunes with LayerDrop (Fan et al.: each encoder layer skipped at random per training batch), then removes
    the chosen layers and shrinks the model."""

    name = "layerdrop"
    options: ClassVar[dict] = {
        "rate": (0.2, float, "probability of skipping each encoder layer per training batch"),
        "drop_layers": ("every_other", None, "1-based layers to remove after training, or every_other"),
        "epochs": (1, int, "fine-tuning epochs with LayerDrop"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (3e-5, float, "peak AdamW learning rate"),
        "max_steps": (None, int, "cap on steps per epoch"),
    }
    fractions = ("rate",)
    counts = ("epochs", "batch_size", "max_steps")
    trains = True

    def tags(self, options: dict) -> list[str]:
        return ["layerdrop", "layers", "shrink"]

    def run(self, run, options: dict, stage_dir: str, train, dev, index: int) -> dict:
        say(f"layerdrop: fine-tuning with LayerDrop p={options['rate']}, then dropping {options['drop_layers']}")
        run.model = with_layerdrop(run.model, options["rate"])
        finetune(run.model, train, dev, epochs=options["epochs"], batch_size=options["batch_size"],
                 learning_rate=options["learning_rate"], max_steps=options["max_steps"], seed=run.recipe["seed"],
                 verbose=2)
        plan = plan_drop_layers(run.model, options["drop_layers"])
        summary = plan.summary(run.model)
        run.model = shrink(run.model, plan)
        return self.save_model(run, stage_dir, {"plan": summary, "tags": self.tags(options)})
