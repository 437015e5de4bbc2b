"""Structured pruning: attention heads, FFN neurons and whole layers, and the shrink that removes them physically.

1. Score: `structure_importance` accumulates Michel et al.'s (2019) head importance |dL/d gate_h| over a few
   batches, and the same first-order score for each FFN neuron. A gate on head h scales its slice of the attention
   output projection, so dL/d gate_h = sum(W_O[h] * dL/dW_O[h]); likewise for neuron n and the FFN output kernel's
   row n. Head scores are L2-normalised per layer, as Michel et al. do.
2. Plan: `plan_by_importance` drops the lowest-scoring heads and neurons, ranked across all layers (at least
   `min_heads` / `min_neurons` stay in each layer); `plan_drop_layers` drops whole layers ("drop 4 and 6", or
   every other layer).
3. Shrink: `shrink(model, plan)` builds a smaller ordinary classifier of the same kind (its own task class over a
   `CompressedBackbone`, through `tfbertopt.surgery`), each layer with its own head count and FFN width, and copies
   the kept weights; it saves, loads, fine-tunes and exports like any other model. `with_layerdrop(model, rate)` gives the same model, unpruned, that skips each
   layer with probability `rate` while training (LayerDrop), so that layers can be dropped afterwards.

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.pruning.structured import plan_drop_layers, shrink
>>> clf = tiny_bert_classifier(["good", "bad"], num_layers=4)
>>> small = shrink(clf, plan_drop_layers(clf, [1, 3]))   # 1-based "drop layers 1 and 3"
>>> len(small.backbone.transformer_layers)
2
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from tfbertopt.data.pipeline import make_dataset, without_preprocessor
from tfbertopt.evaluation import loss_for
from tfbertopt.kernels import (UnsupportedModelError, encoder_call_counts, encoder_layers, encoder_shapes,
                               find_kernels)
from tfbertopt.surgery import as_compressed, check_classifier, describe, rebuild


logger = logging.getLogger(__name__)


@dataclasses.dataclass
class StructurePlan:
    """What a shrink keeps: encoder layers (original indices), and per kept layer its heads and FFN neurons."""

    layers: list[int]
    heads: dict[int, list[int]]
    neurons: dict[int, list[int]]

    def summary(self, model) -> str:
        shapes = encoder_shapes(model)
        kept_heads = sum(len(self.heads[i]) for i in self.layers)
        kept_neurons = sum(len(self.neurons[i]) for i in self.layers)
        return (f"layers {len(self.layers)}/{len(shapes)}, heads {kept_heads}/"
                f"{sum(s['num_heads'] for s in shapes)}, FFN neurons {kept_neurons}/"
                f"{sum(s['intermediate_dim'] for s in shapes)}")


def full_plan(model) -> StructurePlan:
    shapes = encoder_shapes(model)
    return StructurePlan(
        layers=list(range(len(shapes))),
        heads={i: list(range(s["num_heads"])) for i, s in enumerate(shapes)},
        neurons={i: list(range(s["intermediate_dim"])) for i, s in enumerate(shapes)},
    )


def check_shrinkable(model) -> None:
    """UnsupportedModelError, saying why, when `shrink` cannot remove heads or neurons from `model`: not a
    classifier of a family `tfbertopt.surgery.describe` reads, a quantization-aware model, or one with low-rank or
    block-shared layers.
    Reads the model's description only: no copy of it is built."""
    check_classifier(model)
    config = describe(model).config
    if config.get("quantization") is not None:
        raise UnsupportedModelError("structured pruning of a quantization-aware model would discard its trained "
                                    "ranges; prune and shrink first, then quantize (tfbertopt.quantization)")
    for i, spec in enumerate(config["layer_specs"]):
        if spec.get("ranks"):
            raise UnsupportedModelError(f"layer {i} is factorized (low-rank); prune and shrink first, then factorize")
        if spec.get("attention_shared_with") is not None or spec.get("ffn_shared_with") is not None:
            raise UnsupportedModelError(f"layer {i} shares only its attention or FFN block with another layer, so "
                                        f"its heads cannot be chosen apart from it; prune first, then share")


def structure_importance(model, features: dict, labels: np.ndarray, task, batches: int = 16,
                         batch_size: int = 32) -> dict:
    """Michel-style importance of every head (array per layer) and FFN neuron, from `batches` batches.

    Runs the model in inference mode (no dropout) and differentiates the task loss. TensorFlow backend.

    Raises:
      UnsupportedModelError: a model `shrink` cannot apply the scores to (`check_shrinkable`).
    """
    check_shrinkable(model)
    import tensorflow as tf


    outputs = find_kernels(model, roles=["attention_output"])
    ffn_out = find_kernels(model, roles=["ffn_output"])
    variables = [r.variable for r in outputs + ffn_out]
    # Rows of each output kernel grouped by head: (heads, head_dim, H), or keras-hub DeBERTa-v3's (heads * head_dim, H).
    heads = [s["num_heads"] for s in encoder_shapes(model)]
    head_scores = [np.zeros(n) for n in heads]
    neuron_scores = [np.zeros(r.shape[0]) for r in ffn_out]
    loss_fn = loss_for(task)
    ds = make_dataset(features, labels, batch_size, shuffle=True, seed=0, sort_window=1)
    seen = 0
    with without_preprocessor(model):
        for x, y in ds.take(batches):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=False))
            grads = tape.gradient(loss, [v.value if hasattr(v, "value") else v for v in variables])
            for i, r in enumerate(outputs):
                prod = np.asarray(r.variable) * np.asarray(grads[i])
                head_scores[i] += np.abs(prod.reshape(heads[i], -1).sum(axis=1))
            for i, r in enumerate(ffn_out):
                prod = np.asarray(r.variable) * np.asarray(grads[len(outputs) + i])
                neuron_scores[i] += np.abs(prod.sum(axis=1))
            seen += 1
    if not seen:
        raise ValueError("no batches to score structures on")
    head_scores = [s / max(np.linalg.norm(s), 1e-12) for s in head_scores]
    return {"heads": head_scores, "neurons": [s / seen for s in neuron_scores]}


def _keep_top(scores: list[np.ndarray], prune_fraction: float, minimum: int) -> dict[int, list[int]]:
    if not 0.0 <= prune_fraction < 1.0:
        raise ValueError(f"a prune fraction must be in [0, 1), got {prune_fraction}")
    total = sum(len(s) for s in scores)
    n_prune = int(round(prune_fraction * total))
    keep = {i: set(range(len(s))) for i, s in enumerate(scores)}
    ranked = sorted((float(v), i, j) for i, s in enumerate(scores) for j, v in enumerate(s))
    for _, i, j in ranked:
        if n_prune == 0:
            break
        if len(keep[i]) > minimum:
            keep[i].discard(j)
            n_prune -= 1
    return {i: sorted(k) for i, k in keep.items()}


def _round_kept(scores: list[np.ndarray], keep: dict[int, list[int]], multiple: int,
                minimum: int) -> dict[int, list[int]]:
    """Each layer's kept count rounded to the nearest multiple of `multiple` (never below `minimum`, rounded up to a
    multiple; at most the largest multiple within the layer's width, or its whole width when none fits), keeping
    that many of its highest-scoring units."""
    floor = max(1, -(-minimum // multiple)) * multiple
    rounded = {}
    for i, s in enumerate(scores):
        top = len(s) // multiple * multiple or len(s)
        n = min(top, max(floor, int(np.floor(len(keep[i]) / multiple + 0.5)) * multiple))
        rounded[i] = sorted(int(j) for j in np.argsort(-s, kind="stable")[:n])
    return rounded


def plan_by_importance(model, scores: dict, head_fraction: float = 0.0, neuron_fraction: float = 0.0,
                       min_heads: int = 1, min_neurons: int = 64, neuron_multiple: int = 1) -> StructurePlan:
    """Drops the `head_fraction` least important heads and `neuron_fraction` least important FFN neurons,
    ranked across layers, keeping at least `min_heads` heads and `min_neurons` neurons in each layer.

    `neuron_multiple`: then rounds each layer's kept FFN neurons to the nearest multiple of it (not below
    `min_neurons`), so later kernels have the widths quantized files need: LiteRT's XNNPACK delegate leaves an int4
    FULLY_CONNECTED whose input width is odd to the slow builtin kernel (2), and ai-edge-quantizer's blockwise-32
    int4 refuses widths that are not multiples of 32 (32).

    >>> import numpy as np
    >>> from tfbertopt.models import tiny_bert_classifier
    >>> clf = tiny_bert_classifier(["good", "bad"], intermediate_dim=128)
    >>> scores = {"heads": [np.ones(2)] * 2, "neurons": [np.arange(128.0)] * 2}
    >>> plan = plan_by_importance(clf, scores, neuron_fraction=0.6, min_neurons=8, neuron_multiple=32)
    >>> [len(plan.neurons[i]) for i in plan.layers]
    [64, 64]
    """
    if not isinstance(neuron_multiple, int) or neuron_multiple < 1:
        raise ValueError(f"neuron_multiple must be a positive integer, got {neuron_multiple!r}")
    plan = full_plan(model)
    plan.heads = _keep_top(scores["heads"], head_fraction, min_heads)
    plan.neurons = _keep_top(scores["neurons"], neuron_fraction, min_neurons)
    if neuron_multiple > 1:
        plan.neurons = _round_kept(scores["neurons"], plan.neurons, neuron_multiple, min_neurons)
    return plan


def plan_drop_layers(model, drop="every_other", plan: StructurePlan | None = None) -> StructurePlan:
    """Drops whole encoder layers: a list of 1-based layer numbers (the papers' "drop layers 4 and 6"), or
    "every_other" (drops layers 2, 4, ...; keeps the first)."""
    plan = plan or full_plan(model)
    n = len(encoder_layers(model))
    calls = encoder_call_counts(model)
    if any(c > 1 for c in calls):
        raise UnsupportedModelError(
            f"this model calls {n} shared encoder layer(s) at {sum(calls)} depths, and a plan drops encoder layers, "
            f"not single calls of one; unshare first (tfbertopt.factorization.unshare_layers) to drop depths")
    if drop == "every_other":
        numbers = list(range(2, n + 1, 2))
    else:
        numbers = list(drop)
        bad = [k for k in numbers if not isinstance(k, int) or not 1 <= k <= n]
        if bad:
            raise ValueError(f"layers to drop {bad} are not 1-based layer numbers of this {n}-layer encoder")
    kept = [i for i in plan.layers if i + 1 not in numbers]
    if not kept:
        raise ValueError(f"dropping layers {numbers} would leave no encoder layer")
    return StructurePlan(layers=kept, heads=plan.heads, neurons=plan.neurons)


# Encoder weight (path after "transformer_layer_<i>/") -> which axis keeps heads or neurons, and which.
_SLICES = {
    **{f"self_attention_layer/{p}/kernel": ("heads", 1) for p in ("query", "key", "value")},
    **{f"self_attention_layer/{p}/bias": ("heads", 0) for p in ("query", "key", "value")},
    "self_attention_layer/attention_output/kernel": ("heads", 0),
    "feedforward_intermediate_dense/kernel": ("neurons", 1),
    "feedforward_intermediate_dense/bias": ("neurons", 0),
    "feedforward_output_dense/kernel": ("neurons", 0),
}


def _encoder_values(encoder, position: int, heads, neurons) -> dict:
    """The kept slices of `encoder`'s weights, keyed by their paths at new encoder `position`."""
    values = {}
    for w in encoder.weights:
        rest = w.path.split("/", 1)[1]
        value = np.asarray(w)
        if rest in _SLICES:
            which, axis = _SLICES[rest]
            value = np.take(value, heads if which == "heads" else neurons, axis=axis)
        values[f"transformer_layer_{position}/{rest}"] = value
    return values


def shrink(model, plan: StructurePlan, layerdrop: float | None = None):
    """A new, physically smaller classifier keeping exactly what `plan` says; the original is left untouched.

    Every family `tfbertopt.surgery` reads (BERT, MiniLM, ELECTRA, ALBERT, RoBERTa, XLM-RoBERTa, DistilBERT,
    DeBERTa-v3) keeps its own classifier class over a `CompressedBackbone`. In a shared model (ALBERT,
    `share_layers`) the plan names the shared encoder once; every position that calls it gets the same heads and
    neurons.
    """
    check_shrinkable(model)
    source = as_compressed(model)
    backbone = source.backbone
    encoders = encoder_layers(source)
    for i in plan.layers:
        if not plan.heads.get(i) or not plan.neurons.get(i):
            raise ValueError(f"layer {i} keeps no heads or no FFN neurons; drop the layer instead")
    specs, values, first = [], {}, {}
    for spec, u in zip(backbone.layer_specs, backbone.encoder_call_order):
        if u not in plan.layers:
            continue
        new = {"num_heads": len(plan.heads[u]), "key_dim": spec["key_dim"], "intermediate_dim": len(plan.neurons[u])}
        if u in first:
            new["shared_with"] = first[u]
        else:
            first[u] = len(specs)
            values.update(_encoder_values(encoders[u], len(specs), plan.heads[u], plan.neurons[u]))
        specs.append(new)
    changes = {} if layerdrop is None else {"layerdrop": layerdrop}
    new_model = rebuild(source, values=values, layer_specs=specs, **changes)
    logger.info("shrunk: %s", plan.summary(model))
    return new_model


def with_layerdrop(model, rate: float):
    """The same classifier (all weights kept) whose encoder layers are skipped with probability `rate` in training."""
    return rebuild(model, layerdrop=rate)
