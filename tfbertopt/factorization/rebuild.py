"""Rebuild a BERT classifier over a `PrunedBertBackbone` with new layer specs, carrying every weight across.

Factorization and sharing describe their result as layer specs (ranks, `shared_with`) and an embedding width,
plus the new values of the weights they change (keyed by variable path); every other weight is copied from the
source by path. A weight that is neither given nor found is an error, so nothing is silently re-initialised.
"""

from __future__ import annotations

import numpy as np

from tfbertopt.kernels import UnsupportedModelError, get_backbone

_KEEP = object()


def as_pruned_bert(model):
    """`model` itself when it already sits on a `PrunedBertBackbone`, else an exact copy that does (BERT, MiniLM,
    ELECTRA with E = H; other families raise UnsupportedModelError)."""
    from tfbertopt.layers import PrunedBertBackbone
    from tfbertopt.pruning.structured import full_plan, shrink, shrink_family

    if isinstance(get_backbone(model), PrunedBertBackbone):
        if not hasattr(model, "output_dense"):
            raise UnsupportedModelError("factorization needs a BertTextClassifier-style task model "
                                        "(backbone + output_dense)")
        return model
    if shrink_family(model) != "bert":     # refused before any copy is built
        raise UnsupportedModelError(f"factorization, sharing and quantization-aware training rebuild BERT backbones "
                                    f"(BERT, MiniLM, ELECTRA with E = H) only; got "
                                    f"{type(get_backbone(model)).__name__}")
    return shrink(model, full_plan(model))


def _is_quantizer_state(path: str) -> bool:
    """A variable of an `ActivationQuantizer` (its learned range) or a projection's `output_scale`, which a float
    source does not have."""
    parts = path.split("/")
    return (len(parts) >= 2 and parts[-2].endswith("quantizer")) or parts[-1] == "output_scale"


def rebuild(model, layer_specs=None, embedding_dim=_KEEP, values: dict | None = None, quantization=_KEEP):
    """A new classifier like `model` with `layer_specs` / `embedding_dim` / `quantization` (a `QuantizationConfig`
    config dict, or None for a float model), weights from `values` or `model`. Activation-quantizer state (ranges)
    that the source lacks starts empty."""
    import keras_hub

    from tfbertopt.layers import PrunedBertBackbone

    source = as_pruned_bert(model)
    backbone = source.backbone
    new_backbone = PrunedBertBackbone(
        vocabulary_size=backbone.vocabulary_size, hidden_dim=backbone.hidden_dim,
        layer_specs=layer_specs if layer_specs is not None else backbone.layer_specs, dropout=backbone.dropout,
        max_sequence_length=backbone.max_sequence_length, num_segments=backbone.num_segments,
        layerdrop=backbone.layerdrop,
        embedding_dim=backbone.embedding_dim if embedding_dim is _KEEP else embedding_dim,
        quantization=getattr(backbone, "quantization", None) if quantization is _KEEP else quantization,
        dtype=backbone.dtype_policy)
    new = keras_hub.models.BertTextClassifier(
        backbone=new_backbone, num_classes=source.num_classes, preprocessor=source.preprocessor,
        activation=source.activation, dropout=source.dropout)
    old = {w.path: w for w in source.weights}
    values = dict(values or {})
    missing = []
    for w in new.weights:
        if w.path in values:
            value = np.asarray(values.pop(w.path))
        elif w.path in old and tuple(old[w.path].shape) == tuple(w.shape):
            value = np.asarray(old[w.path])
        elif _is_quantizer_state(w.path):
            continue
        else:
            missing.append(f"{w.path} {tuple(w.shape)}")
            continue
        if tuple(value.shape) != tuple(w.shape):
            raise ValueError(f"{w.path}: new value has shape {value.shape}, the rebuilt layer needs {tuple(w.shape)}")
        w.assign(value.astype(w.dtype))
    if missing:
        raise RuntimeError(f"rebuild found no value for {missing}; this is a bug in tfbertopt, please report it")
    if values:
        raise RuntimeError(f"rebuild was given values for weights the new model does not have: {sorted(values)}")
    return new
