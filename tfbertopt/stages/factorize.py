"""The `factorize` stage: ALBERT-style embeddings, SVD of kernels and cross-layer sharing, then recovery."""

from __future__ import annotations

from typing import ClassVar

from tfbertopt.factorization import factorize, factorize_embeddings, plan_factorization, share_layers
from tfbertopt.kernels import count_params
from tfbertopt.stages.base import RecipeError, Stage, say
from tfbertopt.train import finetune


class FactorizeStage(Stage):
    """Factorizes the token embeddings (ALBERT's V x E + E x H), splits kernels into truncated-SVD factor pairs
    and/or shares layers across the encoder, in that order, then recovers by fine-tuning or by distilling from the
    model before the stage."""

    name = "factorize"
    options: ClassVar[dict] = {
        "embedding_dim": (None, int, "ALBERT-style token embedding: V x E table + E x H projection, SVD-initialised"),
        "rank": (None, int, "SVD: one rank for every selected kernel"),
        "energy": (None, float, "SVD: per kernel, the smallest rank keeping this share of squared singular values"),
        "param_fraction": (None, float, "SVD: global budget, the selected kernels keep this share of their weights"),
        "roles": (["attention", "ffn"], list, "kernel roles to factorize by SVD"),
        "share": (None, None, "cross-layer sharing: all | pairs | a group size | [[0-based layers], ...]"),
        "share_parts": (["attention", "ffn"], list, "what the shared layers share: attention and ffn (whole layers), "
                                                    "or only one of them"),
        "share_init": ("average", ("average", "first"), "shared weights start from the group average or its first "
                                                         "layer"),
        "recovery_epochs": (1, int, "fine-tuning epochs after factorizing (0: none)"),
        "distill_recovery": (False, bool, "recover by distilling from the model before factorization (KL on logits "
                                          "+ hard labels) instead of plain fine-tuning"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (5e-5, float, "peak AdamW learning rate of the recovery"),
        "max_steps": (None, int, "cap on recovery steps per epoch"),
    }
    counts = ("batch_size", "max_steps")
    non_negative = ("recovery_epochs",)
    trains = True

    def check(self, path: str, options: dict) -> None:
        svd = [k for k in ("rank", "energy", "param_fraction") if options[k] is not None]
        if len(svd) > 1:
            raise RecipeError(f"{path}: give one SVD rule, not {svd}")
        if not svd and options["embedding_dim"] is None and options["share"] is None:
            raise RecipeError(f"{path}: nothing to do; set embedding_dim, one of rank/energy/param_fraction, or share")
        for key in ("energy", "param_fraction"):
            if options[key] is not None and not 0.0 < options[key] <= (1.0 if key == "energy" else 0.999999):
                raise RecipeError(f"{path}.{key}: must be in (0, 1), got {options[key]}")
        for key in ("rank", "embedding_dim"):
            if options[key] is not None and options[key] < 1:
                raise RecipeError(f"{path}.{key}: must be >= 1, got {options[key]}")
        if not options["share_parts"] or any(p not in ("attention", "ffn") for p in options["share_parts"]):
            raise RecipeError(f"{path}.share_parts: a non-empty subset of [attention, ffn], got "
                              f"{options['share_parts']}")
        share = options["share"]
        if share is not None and not (share in ("all", "pairs")
                                      or (isinstance(share, int) and not isinstance(share, bool) and share >= 1)
                                      or (isinstance(share, list) and all(isinstance(g, list) for g in share))):
            raise RecipeError(f"{path}.share: expected all, pairs, a group size >= 1 or a list of layer lists, "
                              f"got {share!r}")

    @staticmethod
    def _svd_rule(options: dict) -> dict:
        return {k: options[k] for k in ("rank", "energy", "param_fraction") if options[k] is not None}

    def tags(self, options: dict) -> list[str]:
        tags = []
        if options["embedding_dim"] is not None:
            tags.append("embedding-factorization")
        if options["share"] is not None:
            tags.append("sharing")
        if self._svd_rule(options):
            tags.append("svd")
        if options["recovery_epochs"] and options["distill_recovery"]:
            tags += ["distill", "logits-kd"]
        return tags

    def run(self, run, options: dict, stage_dir: str, train, dev, index: int) -> dict:
        before, params = run.model, count_params(run.model)
        model, done = run.model, []
        if options["embedding_dim"] is not None:
            model = factorize_embeddings(model, dim=options["embedding_dim"])
            done.append(f"embedding E={options['embedding_dim']}")
        if options["share"] is not None:
            model = share_layers(model, options["share"], init=options["share_init"], parts=options["share_parts"])
            done.append(f"sharing {'+'.join(options['share_parts'])} of {options['share']} "
                        f"({options['share_init']} init)")
        rule = self._svd_rule(options)
        if rule:
            plan = plan_factorization(model, roles=options["roles"], **rule)
            model = factorize(model, plan)
            done.append(f"SVD {rule}: {plan.summary()}")
        say(f"factorize: {'; '.join(done)}; {params:,} -> {count_params(model):,} weights")
        if options["recovery_epochs"]:
            finetune(model, train, dev, epochs=options["recovery_epochs"], batch_size=options["batch_size"],
                     learning_rate=options["learning_rate"], max_steps=options["max_steps"], seed=run.recipe["seed"],
                     verbose=2, teacher=before if options["distill_recovery"] else None)
        run.model = model
        return self.save_model(run, stage_dir, {"factorization": done, "tags": self.tags(options),
                                                "params_before": params, "params_after": count_params(model)})
