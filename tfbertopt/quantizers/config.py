"""`QuantizationConfig`: what quantization-aware training simulates, apart from how (`quantizers`) and where (`qat`).

The defaults are LiteRT's full-integer scheme: int8 weights, symmetric per channel; int8 activations, per tensor,
asymmetric, with ranges tracked by an exponential moving average of each batch's min/max (Jacob et al. 2018,
Q8BERT). `points` chooses which activations carry a fake-quant (all by default, which is what a full-integer LiteRT
model quantizes):

| point | tensors |
|---|---|
| embeddings | the sum of token, position and segment embeddings; the embedding LayerNorm output |
| embedding_lookups | the token and segment embedding lookups (LiteRT's int8 GATHER: the file's table is requantized to this range; off by default, as the full-integer converter calibrates it) |
| matmul_inputs | the input of every attention/FFN projection and of the pooler (LiteRT quantizes it in front of each int8 FULLY_CONNECTED; off by default, as in a full-integer graph the producing op's output point ranges it) |
| linear | every attention/FFN projection output (query, key, value, attention output, FFN in/out) |
| attention | attention scores (softmax input), probabilities (softmax output, LiteRT's fixed 1/256 grid), context |
| gelu | the FFN activation output |
| residual | each residual sum (LayerNorm input) |
| layer_norm | each LayerNorm output |
| layer_norm_internals | every intermediate of LiteRT's int8 LayerNorm (mean, squared difference, variance, rsqrt, ...): off by default, see below |

`layer_norm_internals` makes training see the int8 LayerNorm that a full-integer LiteRT model computes
(`QuantizedLayerNormalization`). On MiniLM-L6 that LayerNorm is hopeless: the residual stream's outlier dimensions
give the squared differences so wide a range that one int8 step is larger than ordinary variances, which round to
zero (then RSQRT saturates; calibrated ranges in docs/quantization.md). Keeping LayerNorm out of int8 (float, via
`tfbertopt.export.mixed_precision`) is the practical choice; the point exists to measure that, and for models
without such outliers.

`symmetric_activations=True` makes every activation range symmetric around zero (Q8BERT's scheme), which LiteRT runs
too but which wastes half the grid on non-negative tensors.

Example:

>>> from tfbertopt.quantization import QuantizationConfig
>>> config = QuantizationConfig(points=("linear", "attention"))
>>> QuantizationConfig.from_config(config.get_config()) == config
True
>>> QuantizationConfig(points=("lienar",))
Traceback (most recent call last):
...
ValueError: unknown quantization points ['lienar']; choose from ['attention', 'embedding_lookups', 'embeddings', 'gelu', 'layer_norm', 'layer_norm_internals', 'linear', 'matmul_inputs', 'residual']
"""

from __future__ import annotations

import dataclasses

from tfbertopt.quantizers.modes import names

# Output channels that spread by more than this factor get per-channel output scales in int8-matmul
# (`tfbertopt.export.channel_equalization`).
DEFAULT_MIN_SPREAD = 8.0

POINTS = ("embeddings", "linear", "attention", "gelu", "residual", "layer_norm", "layer_norm_internals",
          "matmul_inputs", "embedding_lookups")
DEFAULT_POINTS = POINTS[:6]
# The fake-quants of export_litert's "int8-matmul" graph: int8 embedding lookups and FULLY_CONNECTED inputs, weights
# and outputs, the rest float.
MATMUL_POINTS = ("matmul_inputs", "linear", "embedding_lookups")
# The export_litert quantizations that quantization-aware training can train for (`QuantizationConfig.for_export`).
TARGETS = names(qat_target=True)


@dataclasses.dataclass(frozen=True)
class QuantizationConfig:
    """Args:
      weight_bits: bits of the symmetric per-channel weight grid (8 for LiteRT int8).
      activation_bits: bits of the per-tensor activation grid (8 for LiteRT int8).
      points: which activations carry a fake-quant (see the table above).
      ema_decay: decay of the moving averages of activation min/max during training.
      symmetric_activations: symmetric activation ranges (Q8BERT) instead of LiteRT's asymmetric ones.
      output_channel_spread: projections whose calibrated output channels spread by more than this (max over median)
        get per-channel output scales, as `export_litert(..., "int8-matmul")` gives them
        (`tfbertopt.export.channel_equalization`); set by `quantize_model(..., calibration=)`. None: one scale.
      table_bits: bits of the symmetric per-row grid of the token and segment tables (4: the int4
        EMBEDDING_LOOKUPs of "int4" and "dynamic-int4-tables"; `QuantizedEmbedding`). None: float tables.
      weight_block_size: one (float16) scale per this many consecutive inputs of each kernel channel and entries of
        each table row instead of one per channel or row (32: "int4-block32"). None: per channel.
      learned_weight_scales: each kernel channel's scale is a trained fraction of its max |w| (LSQ-style, started
        at the least-squares clip by `quantize_model`; `fake_quant_weight`'s `clip_ratio`) instead of max |w|
        itself; per-channel kernels only (not blockwise, not the tables).
    """

    weight_bits: int = 8
    activation_bits: int = 8
    points: tuple = DEFAULT_POINTS
    ema_decay: float = 0.99
    symmetric_activations: bool = False
    output_channel_spread: float | None = None
    table_bits: int | None = None
    weight_block_size: int | None = None
    learned_weight_scales: bool = False

    def __post_init__(self):
        points = (self.points,) if isinstance(self.points, str) else tuple(self.points)
        object.__setattr__(self, "points", points)
        unknown = sorted(set(points) - set(POINTS))
        if unknown:
            raise ValueError(f"unknown quantization points {unknown}; choose from {sorted(POINTS)}")
        for name in ("weight_bits", "activation_bits", "table_bits"):
            bits = getattr(self, name)
            if name == "table_bits" and bits is None:
                continue
            if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
                raise ValueError(f"{name} must be an integer in [2, 16], got {bits!r}")
        block = self.weight_block_size
        if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block < 1):
            raise ValueError(f"weight_block_size must be a positive integer or None, got {block!r}")
        if self.learned_weight_scales and block is not None:
            raise ValueError("learned_weight_scales trains per-channel scales; blockwise ones (weight_block_size) "
                             "are not learned")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.output_channel_spread is not None and not self.output_channel_spread >= 1.0:
            raise ValueError(f"output_channel_spread must be >= 1 (max over median of the channel ranges) or None, "
                             f"got {self.output_channel_spread}")

    @classmethod
    def for_export(cls, quantization: str = "int8"):
        """The scheme that trains what `export_litert(model, path, quantization)` runs: "int8" (full integer: every
        point but the LayerNorm internals) or "int8-matmul" (int8 projections with per-channel output scales where
        the channels spread, everything else float) or "int4" (4-bit per-channel kernels and per-row tables, float
        activations: the dynamic-range int4 graph of `tfbertopt.export.int4`), "int4-block32" (the same with one
        scale per 32 weights) or "dynamic-int4-tables" (8-bit per-channel kernels and 4-bit per-row tables, float
        activations)."""
        if quantization == "int8":
            return cls()
        if quantization == "int8-matmul":
            return cls(points=MATMUL_POINTS, output_channel_spread=DEFAULT_MIN_SPREAD)
        if quantization == "int4":
            return cls(weight_bits=4, points=(), table_bits=4)
        if quantization == "int4-block32":
            return cls(weight_bits=4, points=(), table_bits=4, weight_block_size=32)
        if quantization == "dynamic-int4-tables":
            return cls(weight_bits=8, points=(), table_bits=4)
        raise ValueError(f"quantization-aware training targets quantization {' or '.join(map(repr, TARGETS))}, "
                         f"got {quantization!r}")

    @property
    def export_target(self) -> str:
        """The `export_litert` quantization this scheme trains for (see `for_export`)."""
        if self.weight_bits == 4 and not self.points:
            return "int4-block32" if self.weight_block_size == 32 else "int4"
        if self.weight_bits == 8 and self.table_bits == 4 and not self.points:
            return "dynamic-int4-tables"
        return "int8-matmul" if self.matmul_only else "int8"

    def weight_options(self) -> dict:
        """The kernel-grid arguments of `QuantizedEinsumDense` and `QuantizedLowRankEinsumDense`."""
        return {"weight_bits": self.weight_bits, "weight_block_size": self.weight_block_size,
                "learned_weight_scales": self.learned_weight_scales}

    @property
    def matmul_only(self) -> bool:
        """Whether only the projections are quantized (the "int8-matmul" graph)."""
        return set(self.points) <= set(MATMUL_POINTS)

    def quantizes(self, point: str) -> bool:
        return point in self.points

    def activation_quantizer(self, **overrides) -> dict:
        """The config of one `ActivationQuantizer` under this scheme."""
        return {"num_bits": self.activation_bits, "ema_decay": self.ema_decay,
                "symmetric": self.symmetric_activations, **overrides}

    def quantizer_for(self, point: str) -> dict | None:
        """The `ActivationQuantizer` config for a tensor at `point`, or None when that point is not quantized."""
        return self.activation_quantizer() if self.quantizes(point) else None

    def get_config(self) -> dict:
        config = dataclasses.asdict(self)
        config["points"] = list(self.points)
        return config

    @classmethod
    def from_config(cls, config: dict | None):
        if config is None:
            return None
        if isinstance(config, cls):
            return config
        unknown = sorted(set(config) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown QuantizationConfig options {unknown}; "
                             f"choose from {[f.name for f in dataclasses.fields(cls)]}")
        return cls(**config)
