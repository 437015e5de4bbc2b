"""The `prune` stage: unstructured magnitude pruning (GMP or N:M) while fine-tuning."""

from __future__ import annotations

from typing import ClassVar

from tfbertopt.data.pipeline import steps_per_epoch
from tfbertopt.pruning import (ConstantSparsity, PolynomialDecay, PruningPolicy, UpdatePruningStep, get_pruning,
                               prune_low_magnitude, strip_pruning)
from tfbertopt.stages.base import RecipeError, Stage, say
from tfbertopt.train import finetune


class PruneStage(Stage):
    """Gradual magnitude pruning (Zhu & Gupta's polynomial schedule, or constant) or N:M sparsity of the selected
    kernels while fine-tuning; the masks are stripped before the model is saved."""

    name = "prune"
    options: ClassVar[dict] = {
        "final_sparsity": (0.8, float, "target sparsity of the selected kernels"),
        "initial_sparsity": (0.0, float, "sparsity at begin_step"),
        "schedule": ("polynomial", ("polynomial", "constant"), "polynomial decay (GMP) or constant"),
        "end_fraction": (0.7, float, "share of the stage's steps after which the sparsity stays at final"),
        "frequency": (None, int, "steps between mask updates (default: 1/20 of the pruning span)"),
        "m_by_n": (None, list, "[N, M], e.g. [2, 4]: N:M sparsity instead of magnitude ranking"),
        "global_threshold": (False, bool, "one magnitude threshold across kernels"),
        "roles": (["attention", "ffn"], list, "kernel roles to prune (see `tfbertopt kernels`)"),
        "epochs": (1, int, "fine-tuning epochs while pruning"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (3e-5, float, "peak AdamW learning rate"),
        "max_steps": (None, int, "cap on steps per epoch"),
    }
    fractions = ("final_sparsity", "initial_sparsity")
    counts = ("epochs", "batch_size", "max_steps", "frequency")
    trains = True

    def check(self, path: str, options: dict) -> None:
        nm = options["m_by_n"]
        if nm is not None and (len(nm) != 2 or not all(isinstance(v, int) for v in nm) or not 0 < nm[0] < nm[1]):
            raise RecipeError(f"{path}.m_by_n: expected [N, M] integers with 0 < N < M, got {nm}")

    def tags(self, options: dict) -> list[str]:
        return ["n:m"] if options["m_by_n"] else ["gmp", "unstructured"]

    def run(self, run, options: dict, stage_dir: str, train, dev, index: int) -> dict:
        steps = steps_per_epoch(len(train), options["batch_size"])
        if options["max_steps"]:
            steps = min(steps, options["max_steps"])
        total = steps * options["epochs"]
        end = max(1, int(total * options["end_fraction"]))
        frequency = options["frequency"] or max(1, end // 20)
        if options["schedule"] == "constant":
            schedule = ConstantSparsity(options["final_sparsity"], 0, frequency=frequency)
        else:
            schedule = PolynomialDecay(options["initial_sparsity"], options["final_sparsity"], 0, end,
                                       frequency=frequency)
        nm = tuple(options["m_by_n"]) if options["m_by_n"] else None
        say(f"prune: {'N:M ' + str(nm) if nm else options['schedule']} to {options['final_sparsity']} over {end} "
            f"of {total} steps, roles {options['roles']}")
        prune_low_magnitude(run.model, schedule, PruningPolicy(roles=options["roles"]), sparsity_m_by_n=nm,
                            global_threshold=options["global_threshold"])
        finetune(run.model, train, dev, epochs=options["epochs"], batch_size=options["batch_size"],
                 learning_rate=options["learning_rate"], max_steps=options["max_steps"], seed=run.recipe["seed"],
                 callbacks=[UpdatePruningStep()], verbose=2)
        sparsities = get_pruning(run.model).sparsities()
        overall = get_pruning(run.model).overall_sparsity()
        strip_pruning(run.model)
        say(f"prune: overall sparsity {overall:.4f}")
        return self.save_model(run, stage_dir, {"sparsity": overall, "per_kernel": sparsities,
                                                "tags": self.tags(options)})
