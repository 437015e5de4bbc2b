"""Cross-layer parameter sharing (ALBERT): chosen encoder layers reuse one layer's weights.

`share_layers(model, groups)` returns a classifier whose layers in each group call the same encoder object (its
attention, FFN and LayerNorm weights stored once, as in ALBERT's all-shared setting), initialised from the
group's element-wise average (`init="average"`) or from its first layer (`init="first"`). Fine-tune afterwards to
recover. MACs are unchanged (every layer still runs); weights and file size shrink.

Only whole layers are shared: sharing attention alone or the FFN alone (ALBERT's other settings) is not offered.

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.factorization import share_layers
>>> clf = tiny_bert_classifier(["good", "bad"], num_layers=4)
>>> shared = share_layers(clf, "pairs")        # (0, 1) and (2, 3)
>>> len(shared.backbone.transformer_layers), shared.backbone.encoder_call_order
(2, [0, 0, 1, 1])
"""

from __future__ import annotations

import logging

import numpy as np

from tfbertopt.factorization.rebuild import as_pruned_bert, rebuild
from tfbertopt.kernels import encoder_layers

logger = logging.getLogger(__name__)

INITS = ("average", "first")


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


def share_layers(model, groups="pairs", init: str = "average"):
    """A new classifier whose layers in each of `groups` share one set of weights (see the module docstring).

    Raises:
      ValueError: malformed groups, an unknown `init`, layers of different shapes in one group, a model that
        already shares layers.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    source = as_pruned_bert(model)
    specs = [dict(spec) for spec in source.backbone.layer_specs]
    if any(spec.get("shared_with") is not None for spec in specs):
        raise ValueError("this model already shares layers; share from the unshared model")
    encoders = encoder_layers(source)
    values = {}
    for group in sharing_groups(groups, len(specs)):
        leader = group[0]
        shapes = {i: {k: specs[i].get(k) for k in ("num_heads", "key_dim", "intermediate_dim", "ranks")}
                  for i in group}
        if any(shapes[i] != shapes[leader] for i in group):
            raise ValueError(f"layers {group} cannot share weights: their shapes differ {shapes}")
        for i in group[1:]:
            specs[i]["shared_with"] = leader
        if init == "average" and len(group) > 1:
            for k, w in enumerate(encoders[leader].weights):
                values[w.path] = np.mean([np.asarray(encoders[i].weights[k]) for i in group], axis=0)
    new = rebuild(source, specs, values=values)
    logger.info("shared: %s", groups)
    return new
