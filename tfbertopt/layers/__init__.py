"""Serializable Keras layers and backbones that tfbertopt's compressions produce (one per file)."""

from tfbertopt.layers.activation_quantizer import ActivationQuantizer
from tfbertopt.layers.compressed_backbone import CompressedBackbone, PrunedBertBackbone
from tfbertopt.layers.compressed_transformer_encoder import CompressedTransformerEncoder, PrunedTransformerEncoder
from tfbertopt.layers.disentangled_attention import DisentangledAttention
from tfbertopt.layers.low_rank_einsum_dense import LowRankEinsumDense
from tfbertopt.layers.low_rank_multi_head_attention import LowRankMultiHeadAttention
from tfbertopt.layers.pruned_roberta_backbone import PrunedRobertaBackbone
from tfbertopt.layers.quantized_einsum_dense import QuantizedEinsumDense
from tfbertopt.layers.quantized_embedding import QuantizedEmbedding
from tfbertopt.layers.quantized_layer_normalization import QuantizedLayerNormalization
from tfbertopt.layers.quantized_low_rank_einsum_dense import QuantizedLowRankEinsumDense
from tfbertopt.layers.quantized_multi_head_attention import QuantizedMultiHeadAttention
from tfbertopt.layers.relative_position_embedding import RelativePositionEmbedding

__all__ = ["CompressedBackbone", "CompressedTransformerEncoder", "LowRankEinsumDense", "LowRankMultiHeadAttention",
           "ActivationQuantizer", "QuantizedEinsumDense", "QuantizedEmbedding", "QuantizedMultiHeadAttention", "QuantizedLayerNormalization",
           "QuantizedLowRankEinsumDense", "DisentangledAttention", "RelativePositionEmbedding",
           # names of earlier releases, kept so that their .keras files load
           "PrunedBertBackbone", "PrunedRobertaBackbone", "PrunedTransformerEncoder"]
