"""Serializable Keras layers and backbones that tfbertopt's compressions produce (one per file)."""

from tfbertopt.layers.low_rank_einsum_dense import LowRankEinsumDense
from tfbertopt.layers.low_rank_multi_head_attention import LowRankMultiHeadAttention
from tfbertopt.layers.pruned_bert_backbone import PrunedBertBackbone
from tfbertopt.layers.pruned_transformer_encoder import PrunedTransformerEncoder

__all__ = ["PrunedTransformerEncoder", "PrunedBertBackbone", "LowRankEinsumDense", "LowRankMultiHeadAttention"]
