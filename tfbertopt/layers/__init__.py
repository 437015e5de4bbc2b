"""Serializable Keras layers and backbones that tfbertopt's compressions produce (one per file)."""

from tfbertopt.layers.pruned_bert_backbone import PrunedBertBackbone
from tfbertopt.layers.pruned_transformer_encoder import PrunedTransformerEncoder

__all__ = ["PrunedTransformerEncoder", "PrunedBertBackbone"]
