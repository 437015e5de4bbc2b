"""Read any supported keras-hub text encoder into one plain description: the `CompressedBackbone` config it becomes.

`describe(model)` returns an `EncoderDescription`: the family, the keyword arguments of the `CompressedBackbone` that
computes the same function (embedding layout, per-layer heads/head size/FFN width/ranks/sharing, activation,
LayerNorm epsilon, pooler, quantization), and the source's encoder layers in the order the new backbone builds its
own. Every compression edits this description; `tfbertopt.surgery.rebuild` builds it and copies the weights.

Families (keras-hub backbone -> description):

| backbone | segments | embeddings | encoder sharing | pooler |
| --- | --- | --- | --- | --- |
| BertBackbone (BERT, MiniLM, tiny BERTs) | yes | H | none | yes |
| ElectraBackbone | yes | E, projected after the LayerNorm when E != H | none | yes |
| AlbertBackbone | yes | E, projected after the LayerNorm | every layer of a group `shared_with` its first | yes |
| RobertaBackbone, XLMRobertaBackbone | no | H | none | no |
| DistilBertBackbone | no | H | none | no |
| DebertaV3Backbone | no | H, tokens only (no position table) | none | no |
| CompressedBackbone (and its 0.1 names) | as saved | as saved | as saved | as saved |

DeBERTa-v3's layers compute disentangled attention (content-to-position and position-to-content scores over
relative-position embeddings shared by all layers): its description says `attention="disentangled"`,
`bucket_size` (keras-hub's), `absolute_positions=False`, and the new backbone holds the relative-position table
once; each layer's attention is tfbertopt's `DisentangledAttention`, which takes any head count and head size.

Example:

>>> from tfbertopt.models import tiny_classifier
>>> from tfbertopt.surgery import describe
>>> d = describe(tiny_classifier("albert", num_layers=3))
>>> d.family, d.config["embedding_projection"], [s.get("shared_with") for s in d.config["layer_specs"]]
('albert', 'after_norm', [None, 0, 0])
"""

from __future__ import annotations

import dataclasses

import keras_hub

from tfbertopt.kernels import UnsupportedModelError, encoder_layers, encoder_shapes, get_backbone
from tfbertopt.layers import CompressedBackbone, PrunedRobertaBackbone

# Task class name -> family name, for the families `describe` reads.
TASK_FAMILIES = {
    "BertTextClassifier": "bert", "AlbertTextClassifier": "albert", "RobertaTextClassifier": "roberta",
    "XLMRobertaTextClassifier": "xlm_roberta", "DistilBertTextClassifier": "distilbert",
    "DebertaV3TextClassifier": "deberta_v3",
}
# Not part of the description: a rebuilt model is a new one (`quantized_projection` only keeps old files loading).
_BASE_KEYS = ("name", "trainable", "dtype", "quantized_projection")


@dataclasses.dataclass
class EncoderDescription:
    """What a `CompressedBackbone` needs to compute `source`'s encoder: `config` (its keyword arguments) and
    `encoders` (the source's encoder objects, one per unique layer of the new backbone, in its order)."""

    family: str
    config: dict
    encoders: list

    @property
    def layer_specs(self) -> list[dict]:
        return self.config["layer_specs"]


def family_of(model) -> str:
    """The family name of a classifier or backbone ("bert", "electra", "albert", "roberta", "xlm_roberta",
    "distilbert", "deberta_v3"), or UnsupportedModelError."""
    backbone = get_backbone(model)
    if isinstance(backbone, keras_hub.models.ElectraBackbone):
        return "electra"
    task = type(model).__name__ if model is not backbone else None
    if task in TASK_FAMILIES:
        return TASK_FAMILIES[task]
    for cls, name in ((keras_hub.models.AlbertBackbone, "albert"), (keras_hub.models.XLMRobertaBackbone, "xlm_roberta"),
                      (keras_hub.models.RobertaBackbone, "roberta"), (keras_hub.models.DistilBertBackbone, "distilbert"),
                      (keras_hub.models.DebertaV3Backbone, "deberta_v3"), (keras_hub.models.BertBackbone, "bert"),
                      (CompressedBackbone, "bert")):
        if isinstance(backbone, cls):
            return name
    raise UnsupportedModelError(f"{type(backbone).__name__} is not a keras-hub text encoder family tfbertopt reads "
                                f"(BERT, ELECTRA, ALBERT, RoBERTa, XLM-RoBERTa, DistilBERT, DeBERTa-v3)")


def _specs(model) -> list[dict]:
    return [{"num_heads": s["num_heads"], "key_dim": s["head_dim"], "intermediate_dim": s["intermediate_dim"]}
            for s in encoder_shapes(model)]


def describe(model) -> EncoderDescription:
    """The `EncoderDescription` of a keras-hub classifier or backbone (see the module docstring).

    Raises:
      UnsupportedModelError: a model that is no text encoder of these families.
    """
    backbone = get_backbone(model)
    family = family_of(model)
    encoders = encoder_layers(model)
    if isinstance(backbone, CompressedBackbone):
        config = {k: v for k, v in backbone.get_config().items() if k not in _BASE_KEYS}
        config["layer_specs"] = [dict(spec) for spec in config["layer_specs"]]
        return EncoderDescription(family, config, encoders)
    config = dict(vocabulary_size=find_vocabulary_size(backbone), hidden_dim=backbone.hidden_dim,
                  layer_specs=_specs(model), dropout=backbone.dropout,
                  max_sequence_length=backbone.max_sequence_length, dtype=backbone.dtype_policy)
    if family in ("bert", "electra", "albert"):
        config.update(num_segments=backbone.num_segments, activation="gelu_approximate", layer_norm_epsilon=1e-12,
                      pooler=True)
        if family == "albert" or (family == "electra" and backbone.embedding_dim != backbone.hidden_dim):
            config.update(embedding_dim=backbone.embedding_dim, embedding_projection="after_norm")
    else:
        norm = backbone.get_layer("embeddings_layer_norm")
        config.update(num_segments=0, activation="gelu", layer_norm_epsilon=float(norm.epsilon), pooler=False)
    if family == "deberta_v3":
        config.update(absolute_positions=False, attention="disentangled", bucket_size=backbone.bucket_size)
    if isinstance(backbone, PrunedRobertaBackbone):
        config["layerdrop"] = backbone.layerdrop
    if family == "albert":
        config["layer_specs"] = _albert_specs(backbone, config["layer_specs"])
    return EncoderDescription(family, config, encoders)


def _albert_specs(backbone, unique_specs: list[dict]) -> list[dict]:
    """ALBERT's call order as layer specs: group g's inner layers, repeated num_layers // num_groups times, each
    repeat `shared_with` the group's first call of that inner layer."""
    inner, repeats = backbone.num_inner_repetitions, backbone.num_layers // backbone.num_groups
    specs = []
    for g in range(backbone.num_groups):
        first = len(specs)
        for r in range(repeats):
            for k in range(inner):
                spec = dict(unique_specs[g * inner + k])
                if r:
                    spec["shared_with"] = first + k
                specs.append(spec)
    return specs


def find_vocabulary_size(backbone) -> int:
    # ELECTRA names it vocab_size
    return getattr(backbone, "vocabulary_size", None) or backbone.vocab_size
