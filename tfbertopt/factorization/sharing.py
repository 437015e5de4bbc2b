"""Cross-layer parameter sharing (ALBERT): chosen encoder layers reuse one layer's weights.

`share_layers(model, groups)` returns a classifier whose layers in each group call the same encoder object (its
attention, FFN and LayerNorm weights stored once, as in ALBERT's all-shared setting), initialised from the
group's element-wise average (`init="average"`) or from its first layer (`init="first"`). Fine-tune afterwards to
recover. MACs are unchanged (every layer still runs); weights and file size shrink.

`parts=("attention",)` or `("ffn",)` shares only the attention block or only the FFN kernels (ALBERT's
shared-attention and shared-FFN settings); each layer keeps its own LayerNorms then.

`unshare_layers(model)` undoes any sharing (ALBERT's own included): every layer gets its own copy of the weights
it called, so the logits stay the same while structured pruning and layer dropping can treat the layers apart.

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.factorization import share_layers, unshare_layers
>>> clf = tiny_bert_classifier(["good", "bad"], num_layers=4)
>>> shared = share_layers(clf, "pairs")        # (0, 1) and (2, 3)
>>> len(shared.backbone.transformer_layers), shared.backbone.encoder_call_order
(2, [0, 0, 1, 1])
>>> ffn = share_layers(clf, "all", parts=["ffn"])
>>> layers = ffn.backbone.transformer_layers
>>> layers[3]._feedforward_output_dense is layers[0]._feedforward_output_dense, len(layers)
(True, 4)
>>> [l.name for l in unshare_layers(shared).backbone.transformer_layers]
['transformer_layer_0', 'transformer_layer_1', 'transformer_layer_2', 'transformer_layer_3']
"""

from __future__ import annotations

import logging

import numpy as np

from tfbertopt.surgery import as_compressed, rebuild
from tfbertopt.kernels import encoder_layers

logger = logging.getLogger(__name__)

INITS = ("average", "first")
PARTS = ("attention", "ffn")
SHARE_KEYS = ("shared_with", "attention_shared_with", "ffn_shared_with")


def sharing_groups(spec, num_layers: int) -> list[list[int]]:
    """Groups of 0-based layer indices from "all", "pairs", an int group size, or an explicit list of lists."""
    if spec == "all":
        return [list(range(num_layers))]
    if spec == "pairs":
        spec = 2
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 1:
            raise ValueError(f"group size must be >= 1, got {spec}")
        return [list(range(i, min(i + spec, num_layers))) for i in range(0, num_layers, spec)]
    if not isinstance(spec, (list, tuple)) or not all(isinstance(g, (list, tuple)) for g in spec):
        raise ValueError(f"groups must be 'all', 'pairs', a group size or a list of index lists, got {spec!r}")
    seen = set()
    groups = []
    for group in spec:
        bad = [i for i in group if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_layers]
        if bad:
            raise ValueError(f"group {list(group)}: {bad} are not 0-based indices of the {num_layers} encoder layers")
        if seen & set(group):
            raise ValueError(f"layers {sorted(seen & set(group))} appear in more than one group")
        seen.update(group)
        groups.append(sorted(group))
    return groups


def _part_weights(encoder, part: str) -> list:
    if part == "attention":
        return encoder._self_attention_layer.weights
    return encoder._feedforward_intermediate_dense.weights + encoder._feedforward_output_dense.weights


def share_layers(model, groups="pairs", init: str = "average", parts=PARTS):
    """A new classifier whose layers in each of `groups` share one set of weights (see the module docstring):
    whole layers when `parts` is both "attention" and "ffn", else only the named block.

    Raises:
      ValueError: malformed groups or parts, an unknown `init`, layers of different shapes in one group, a model
        that already shares layers.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    parts = [parts] if isinstance(parts, str) else list(parts)
    if not parts or any(p not in PARTS for p in parts):
        raise ValueError(f"parts must be a non-empty subset of {PARTS}, got {parts!r}")
    whole = set(parts) == set(PARTS)
    source = as_compressed(model)
    specs = [dict(spec) for spec in source.backbone.layer_specs]
    if any(spec.get(k) is not None for spec in specs for k in SHARE_KEYS):
        raise ValueError("this model already shares layers; share from the unshared model")
    encoders = encoder_layers(source)
    values = {}
    keys = {"attention": ("num_heads", "key_dim"), "ffn": ("intermediate_dim",)}
    for group in sharing_groups(groups, len(specs)):
        leader = group[0]

        def shape(i):
            ranks = {r: v for r, v in (specs[i].get("ranks") or {}).items() if r.split("_")[0] in parts}
            return {**{k: specs[i].get(k) for p in parts for k in keys[p]}, "ranks": ranks}

        if any(shape(i) != shape(leader) for i in group):
            raise ValueError(f"layers {group} cannot share weights: their shapes differ "
                             f"{ {i: shape(i) for i in group} }")
        for i in group[1:]:
            if whole:
                specs[i]["shared_with"] = leader
            else:
                for p in parts:
                    specs[i][f"{p}_shared_with"] = leader
        if init == "average" and len(group) > 1:
            def weights(i):
                return encoders[i].weights if whole else [w for p in parts for w in _part_weights(encoders[i], p)]

            for k, w in enumerate(weights(leader)):
                values[w.path] = np.mean([np.asarray(weights(i)[k]) for i in group], axis=0)
    new = rebuild(source, values=values, layer_specs=specs)
    logger.info("shared %s: %s", "+".join(parts), groups)
    return new


def unshare_layers(model):
    """A new classifier in which every encoder layer owns its weights: each shared layer (ALBERT's, or one made by
    `share_layers`) becomes a copy of the weights it called, so the logits are unchanged.

    Raises:
      ValueError: the model shares nothing.
    """
    source = as_compressed(model)
    specs = [dict(spec) for spec in source.backbone.layer_specs]
    if not any(spec.get(k) is not None for spec in specs for k in SHARE_KEYS):
        raise ValueError("this model shares no layers; there is nothing to unshare")
    owners = {}            # position -> the position whose encoder object it calls
    for i, spec in enumerate(specs):
        j = spec.get("shared_with")
        owners[i] = i if j is None else owners[j]
    by_position = dict(zip((i for i in owners if owners[i] == i), encoder_layers(source)))
    values = {}
    for i, spec in enumerate(specs):
        for part in PARTS:
            donor = spec.pop(f"{part}_shared_with", None)
            if donor is not None:
                for w in _part_weights(by_position[donor], part):
                    values[f"transformer_layer_{i}/{w.path.split('/', 1)[1]}"] = np.asarray(w)
        spec.pop("shared_with", None)
    new = rebuild(source, values=values, sources=owners, layer_specs=specs)
    logger.info("unshared %d layers", len(specs))
    return new
