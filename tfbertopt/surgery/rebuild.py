"""The one place that rebuilds a model: a `CompressedBackbone` from a description, under the source's own task class.

- `as_compressed(model)`: `model` itself when it already sits on a `CompressedBackbone`, else an exact copy that does
  (same logits): embeddings, pooler and head copied by role (`tfbertopt.kernels`), encoder layers one by one.
- `rebuild(model, **changes)`: a new classifier whose backbone config is `model`'s with `changes` (layer specs,
  embedding width, quantization, ...); each new weight comes from `values` (keyed by variable path), else from the
  source weight of the same path (`sources` maps new encoder positions to old ones when layers are dropped or
  un-shared). A weight found in neither is an error, so nothing is silently re-initialised; activation-quantizer
  state (ranges) that the source lacks starts empty.

Shrink, LayerDrop, SVD and embedding factorization, sharing, quantization-aware training and the layer-initialised
distillation students all build their models here.

Example:

>>> import numpy as np
>>> from tfbertopt.models import tiny_classifier
>>> from tfbertopt.surgery import as_compressed
>>> clf = tiny_classifier("distilbert")
>>> copy = as_compressed(clf)
>>> type(copy).__name__, type(copy.backbone).__name__
('DistilBertTextClassifier', 'CompressedBackbone')
>>> x = ["the movie is great", "this film was not boring"]
>>> bool(np.allclose(clf.predict(x, verbose=0), copy.predict(x, verbose=0), atol=1e-5))
True
"""

from __future__ import annotations

import numpy as np

from tfbertopt.kernels import UnsupportedModelError, find_kernels, get_backbone
from tfbertopt.layers import CompressedBackbone
from tfbertopt.surgery.description import describe

_EMBEDDING_ROLES = ("token_embedding", "position_embedding", "segment_embedding", "relative_embedding",
                    "embedding_projection", "embedding_layer_norm", "pooler")
_TABLES = ("token_embedding", "position_embedding", "segment_embedding")


def check_classifier(model):
    """UnsupportedModelError unless `model` is a keras-hub text classifier (a backbone and an `output_dense` head)."""
    if get_backbone(model) is model or not hasattr(model, "output_dense"):
        raise UnsupportedModelError(f"{type(model).__name__} is not a keras-hub text classifier (backbone + "
                                    f"output_dense, e.g. BertTextClassifier); tfbertopt compresses classifiers")


def task_like(model, backbone, preprocessor=None):
    """A classifier of `model`'s own task class (BertTextClassifier, RobertaTextClassifier, ...) over `backbone`,
    with `model`'s head weights and its preprocessor (or `preprocessor`)."""
    kwargs = dict(backbone=backbone, num_classes=model.num_classes,
                  preprocessor=model.preprocessor if preprocessor is None else preprocessor,
                  activation=model.activation, dropout=model.dropout)
    if hasattr(model, "hidden_dim"):       # RoBERTa-style heads have a hidden layer of this width
        kwargs["hidden_dim"] = model.hidden_dim
    new = type(model)(**kwargs)
    for name in ("pooled_dense", "output_dense"):
        if hasattr(model, name):
            getattr(new, name).set_weights(getattr(model, name).get_weights())
    return new


def copy_encoder(src, dst, heads=None, neurons=None):
    """Copies encoder `src`'s weights into `dst`, keeping only `heads` / FFN `neurons` (index arrays; None = all)."""
    att, new_att = src._self_attention_layer, dst._self_attention_layer
    heads = slice(None) if heads is None else np.asarray(heads)
    neurons = slice(None) if neurons is None else np.asarray(neurons)
    for part in ("_query_dense", "_key_dense", "_value_dense"):
        s, d = getattr(att, part), getattr(new_att, part)
        d.kernel.assign(np.asarray(s.kernel)[:, heads, :])
        d.bias.assign(np.asarray(s.bias)[heads, :])
    # (heads, head_dim, H); keras-hub's DeBERTa-v3 keeps it as (heads * head_dim, H), rows in head-major order.
    _, n_heads, head_dim = np.asarray(att._query_dense.kernel).shape
    output = np.asarray(att._output_dense.kernel).reshape(n_heads, head_dim, -1)
    new_att._output_dense.kernel.assign(output[heads, :, :])
    new_att._output_dense.bias.assign(np.asarray(att._output_dense.bias))
    for norm in ("_self_attention_layer_norm", "_feedforward_layer_norm"):
        getattr(dst, norm).set_weights(getattr(src, norm).get_weights())
    for name, index in (("_feedforward_intermediate_dense", (slice(None), neurons)),
                        ("_feedforward_output_dense", (neurons, slice(None)))):
        s, d = getattr(src, name), getattr(dst, name)
        d.kernel.assign(np.asarray(s.kernel)[index])
        d.bias.assign(np.asarray(s.bias)[index[1:]] if name.endswith("intermediate_dense") else np.asarray(s.bias))


def as_compressed(model):
    """`model` on a `CompressedBackbone`: itself if it already is, else an exact copy (same logits)."""
    check_classifier(model)
    if isinstance(get_backbone(model), CompressedBackbone):
        return model
    description = describe(model)
    new = task_like(model, CompressedBackbone(**description.config))
    _copy_embeddings(model, new)
    for src, dst in zip(description.encoders, new.backbone.transformer_layers):
        copy_encoder(src, dst)
    return new


def _copy_embeddings(source, new):
    old = {r.role: r for r in find_kernels(source, roles=_EMBEDDING_ROLES)}
    for ref in find_kernels(new, roles=_EMBEDDING_ROLES):
        values = [np.asarray(v) for v in _layer_variables(old[ref.role])]
        for variable, value in zip(_layer_variables(ref), values):
            variable.assign(value)


def _layer_variables(ref):
    """The variables of a role's layer: an embedding's table alone (TokenAndPositionEmbedding holds two), else all
    (DeBERTa-v3's relative embedding: its table and its LayerNorm, in the same order in keras-hub and here)."""
    if ref.role in _TABLES:
        return [ref.variable]
    return list(ref.layer.weights)


def _is_quantizer_state(path: str) -> bool:
    """A variable of an `ActivationQuantizer` (its learned range), a projection's `output_scale` or a kernel's clip
    ratios (`learned_weight_scales`), which a float source does not have."""
    parts = path.split("/")
    return ((len(parts) >= 2 and parts[-2].endswith("quantizer")) or parts[-1] == "output_scale"
            or parts[-1].endswith("clip_ratio"))


def _source_path(path: str, sources: dict[int, int] | None) -> str:
    if sources and path.startswith("transformer_layer_"):
        head, _, rest = path.partition("/")
        position = int(head.rsplit("_", 1)[1])
        if position in sources:
            return f"transformer_layer_{sources[position]}/{rest}"
    return path


def rebuild(model, values: dict | None = None, sources: dict[int, int] | None = None, preprocessor=None,
            **changes):
    """A new classifier like `model` whose `CompressedBackbone` config is `model`'s with `changes` (e.g.
    `layer_specs=`, `embedding_dim=`, `quantization=`, `layerdrop=`, `vocabulary_size=`); weights from `values`
    (variable path -> array), else from `model` (encoder position `p` of the new model reads position
    `sources.get(p, p)`); `model`'s preprocessor unless `preprocessor` is given (a trimmed vocabulary's)."""
    source = as_compressed(model)
    description = describe(source)
    unknown = sorted(set(changes) - set(description.config))
    if unknown:
        raise TypeError(f"rebuild got unknown backbone options {unknown}")
    new = task_like(source, CompressedBackbone(**{**description.config, **changes}), preprocessor)
    old = {w.path: w for w in source.weights}
    values = dict(values or {})
    missing = []
    for w in new.weights:
        origin = _source_path(w.path, sources)
        if w.path in values:
            value = np.asarray(values.pop(w.path))
        elif origin in old and tuple(old[origin].shape) == tuple(w.shape):
            value = np.asarray(old[origin])
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
