"""Structured pruning: attention heads, FFN neurons and whole layers, and the shrink that removes them physically.

1. Score: `structure_importance` accumulates Michel et al.'s (2019) head importance |dL/d gate_h| over a few
   batches, and the same first-order score for each FFN neuron. A gate on head h scales its slice of the attention
   output projection, so dL/d gate_h = sum(W_O[h] * dL/dW_O[h]); likewise for neuron n and the FFN output kernel's
   row n. Head scores are L2-normalised per layer, as Michel et al. do.
2. Plan: `plan_by_importance` drops the lowest-scoring heads and neurons, ranked across all layers (at least
   `min_heads` / `min_neurons` stay in each layer); `plan_drop_layers` drops whole layers ("drop 4 and 6", or
   every other layer).
3. Shrink: `shrink(model, plan)` builds a smaller ordinary classifier of the same kind (BERT, MiniLM, ELECTRA
   with E = H: `BertTextClassifier` over a `PrunedBertBackbone`; RoBERTa, DistilBERT: their own classifier over a
   `PrunedRobertaBackbone`), each layer with its own head count and FFN width, and copies the kept weights; it
   saves, loads, fine-tunes and exports like any other model. `with_layerdrop(model, rate)` gives the same model, unpruned, that skips each
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

import keras
import numpy as np

from tfbertopt.kernels import UnsupportedModelError, encoder_layers, encoder_shapes, get_backbone

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


def shrink_family(model) -> str:
    """The family `shrink` rebuilds `model` as: "bert" (BERT, MiniLM, ELECTRA with E = H) or "roberta" (RoBERTa,
    DistilBERT); anything else is an UnsupportedModelError that says why."""
    import keras_hub

    from tfbertopt.layers import PrunedBertBackbone, PrunedRobertaBackbone

    backbone = get_backbone(model)
    if isinstance(backbone, keras_hub.models.ElectraBackbone) and backbone.embedding_dim != backbone.hidden_dim:
        raise UnsupportedModelError(
            f"shrink supports ELECTRA only with embedding_dim == hidden_dim (then it is BERT-shaped); this one "
            f"projects {backbone.embedding_dim}-wide embeddings to {backbone.hidden_dim}")
    if isinstance(backbone, (keras_hub.models.BertBackbone, keras_hub.models.ElectraBackbone, PrunedBertBackbone)):
        family = "bert"
    elif isinstance(backbone, (keras_hub.models.RobertaBackbone, keras_hub.models.DistilBertBackbone,
                               PrunedRobertaBackbone)):
        family = "roberta"
    else:
        raise UnsupportedModelError(
            f"structured pruning and shrinking support BERT, MiniLM, ELECTRA (E = H), RoBERTa and DistilBERT "
            f"backbones; got {type(backbone).__name__}"
            + (" (its encoder layers are shared across depth, so heads cannot be pruned per layer)"
               if isinstance(backbone, keras_hub.models.AlbertBackbone) else ""))
    if isinstance(backbone, PrunedBertBackbone) and (
            backbone.embedding_dim is not None or any(spec.get("ranks") or spec.get("shared_with") is not None
                                                      for spec in backbone.layer_specs)):
        raise UnsupportedModelError("structured pruning works on dense, unshared layers: prune and shrink first, "
                                    "then factorize or share (tfbertopt.factorization)")
    if getattr(model, "backbone", None) is None or not hasattr(model, "output_dense"):
        raise UnsupportedModelError("shrink needs a keras-hub text classifier (backbone + output_dense), e.g. "
                                    "BertTextClassifier")
    return family


def structure_importance(model, features: dict, labels: np.ndarray, task, batches: int = 16,
                         batch_size: int = 32) -> dict:
    """Michel-style importance of every head (array per layer) and FFN neuron, from `batches` batches.

    Runs the model in inference mode (no dropout) and differentiates the task loss. TensorFlow backend.
    """
    import tensorflow as tf

    from tfbertopt.data.pipeline import make_dataset, without_preprocessor
    from tfbertopt.kernels import find_kernels
    from tfbertopt.train import loss_for

    outputs = find_kernels(model, roles=["attention_output"])
    ffn_out = find_kernels(model, roles=["ffn_output"])
    variables = [r.variable for r in outputs + ffn_out]
    head_scores = [np.zeros(r.shape[0]) for r in outputs]
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
                head_scores[i] += np.abs(prod.sum(axis=(1, 2)))
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


def plan_by_importance(model, scores: dict, head_fraction: float = 0.0, neuron_fraction: float = 0.0,
                       min_heads: int = 1, min_neurons: int = 64) -> StructurePlan:
    """Drops the `head_fraction` least important heads and `neuron_fraction` least important FFN neurons,
    ranked across layers, keeping at least `min_heads` heads and `min_neurons` neurons in each layer."""
    plan = full_plan(model)
    plan.heads = _keep_top(scores["heads"], head_fraction, min_heads)
    plan.neurons = _keep_top(scores["neurons"], neuron_fraction, min_neurons)
    return plan


def plan_drop_layers(model, drop="every_other", plan: StructurePlan | None = None) -> StructurePlan:
    """Drops whole encoder layers: a list of 1-based layer numbers (the papers' "drop layers 4 and 6"), or
    "every_other" (drops layers 2, 4, ...; keeps the first)."""
    plan = plan or full_plan(model)
    n = len(encoder_layers(model))
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


def _copy(dst, src_value):
    dst.assign(np.asarray(src_value))


def _copy_encoder(src, dst, heads: np.ndarray, neurons: np.ndarray):
    """Copies the kept heads and FFN neurons of encoder `src` into the smaller encoder `dst`."""
    src_att, dst_att = src._self_attention_layer, dst._self_attention_layer
    for part in ("_query_dense", "_key_dense", "_value_dense"):
        s, d = getattr(src_att, part), getattr(dst_att, part)
        _copy(d.kernel, np.asarray(s.kernel)[:, heads, :])
        _copy(d.bias, np.asarray(s.bias)[heads, :])
    _copy(dst_att._output_dense.kernel, np.asarray(src_att._output_dense.kernel)[heads, :, :])
    _copy(dst_att._output_dense.bias, src_att._output_dense.bias)
    for norm in ("_self_attention_layer_norm", "_feedforward_layer_norm"):
        getattr(dst, norm).set_weights(getattr(src, norm).get_weights())
    _copy(dst._feedforward_intermediate_dense.kernel,
          np.asarray(src._feedforward_intermediate_dense.kernel)[:, neurons])
    _copy(dst._feedforward_intermediate_dense.bias, np.asarray(src._feedforward_intermediate_dense.bias)[neurons])
    _copy(dst._feedforward_output_dense.kernel, np.asarray(src._feedforward_output_dense.kernel)[neurons, :])
    _copy(dst._feedforward_output_dense.bias, src._feedforward_output_dense.bias)


def _smaller_backbone(family: str, backbone, specs: list[dict], layerdrop: float):
    """The pruned backbone of `family` with `specs`, its embeddings (and BERT's pooler) copied from `backbone`."""
    import keras_hub

    from tfbertopt.layers import PrunedBertBackbone, PrunedRobertaBackbone

    if family == "bert":
        new = PrunedBertBackbone(
            # ELECTRA names it vocab_size
            vocabulary_size=getattr(backbone, "vocabulary_size", None) or backbone.vocab_size,
            hidden_dim=backbone.hidden_dim, layer_specs=specs, dropout=backbone.dropout,
            max_sequence_length=backbone.max_sequence_length, num_segments=backbone.num_segments,
            layerdrop=layerdrop, dtype=backbone.dtype_policy)
        names = ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm",
                 "pooled_dense")
    else:
        embeddings = next(l for l in backbone.layers if isinstance(l, keras_hub.layers.TokenAndPositionEmbedding))
        norm = backbone.get_layer("embeddings_layer_norm")
        new = PrunedRobertaBackbone(
            vocabulary_size=backbone.vocabulary_size, hidden_dim=backbone.hidden_dim, layer_specs=specs,
            dropout=backbone.dropout, max_sequence_length=backbone.max_sequence_length, layerdrop=layerdrop,
            layer_norm_epsilon=norm.epsilon, embeddings_name=embeddings.name, dtype=backbone.dtype_policy)
        names = (embeddings.name, "embeddings_layer_norm")
    for name in names:
        new.get_layer(name).set_weights(backbone.get_layer(name).get_weights())
    return new


def _task_like(model, backbone):
    """A classifier of `model`'s own task class (BertTextClassifier, RobertaTextClassifier, ...) over `backbone`,
    with `model`'s head weights."""
    kwargs = dict(backbone=backbone, num_classes=model.num_classes, preprocessor=model.preprocessor,
                  activation=model.activation, dropout=model.dropout)
    if hasattr(model, "hidden_dim"):       # RoBERTa and DistilBERT heads have a hidden layer of this width
        kwargs["hidden_dim"] = model.hidden_dim
    new = type(model)(**kwargs)
    for name in ("pooled_dense", "output_dense"):
        if hasattr(model, name):
            getattr(new, name).set_weights(getattr(model, name).get_weights())
    return new


def shrink(model, plan: StructurePlan, layerdrop: float = 0.0):
    """A new, physically smaller classifier keeping exactly what `plan` says; the original is left untouched.

    BERT, MiniLM and ELECTRA (E = H) become a classifier over a `PrunedBertBackbone`; RoBERTa and DistilBERT keep
    their own classifier class over a `PrunedRobertaBackbone`. ALBERT (one encoder shared by every depth) is refused.
    """
    family = shrink_family(model)
    backbone = get_backbone(model)
    encoders = encoder_layers(model)
    shapes = encoder_shapes(model)
    for i in plan.layers:
        if not plan.heads.get(i) or not plan.neurons.get(i):
            raise ValueError(f"layer {i} keeps no heads or no FFN neurons; drop the layer instead")
    specs = [{"num_heads": len(plan.heads[i]), "key_dim": shapes[i]["head_dim"],
              "intermediate_dim": len(plan.neurons[i])} for i in plan.layers]
    new_backbone = _smaller_backbone(family, backbone, specs, layerdrop)
    for j, i in enumerate(plan.layers):
        _copy_encoder(encoders[i], new_backbone.transformer_layers[j], np.array(plan.heads[i]),
                      np.array(plan.neurons[i]))
    new = _task_like(model, new_backbone)
    logger.info("shrunk: %s", plan.summary(model))
    return new


def with_layerdrop(model, rate: float):
    """The same classifier (all weights kept) whose encoder layers are skipped with probability `rate` in training."""
    return shrink(model, full_plan(model), layerdrop=rate)
