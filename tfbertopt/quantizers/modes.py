"""The one registry of quantization modes: what each LiteRT export mode needs and how its benchmark rows are tagged.

Export (`tfbertopt.export.litert`, `tfbertopt.export.mixed_precision`), the recipe schema (`tfbertopt.recipe`), the
runner's result tags and quantization-aware training's targets all read their lists from `MODES`.

| field | meaning |
| --- | --- |
| `calibrated` | needs calibration data (task examples or features) |
| `integer_softmax` | the softmax, and so its masked input, runs in integer (int8 attention masks with a floor) |
| `litert` | written by `export_litert` (False: by its own module, e.g. Q-BERT mixed precision) |
| `recipe` | offered by the recipe's `export` stage |
| `qat_target` | quantization-aware training can train for it (`QuantizationConfig.for_export`) |
| `writer` | what writes its weights: the TF "converter", or "ai-edge-quantizer" from the converter's float32 graph |
| `tags` | the `../shared/BENCHMARKS.md` tags of its rows |

Example:

>>> from tfbertopt.quantizers.modes import MODES, names
>>> names(calibrated=True)
('int8', '16x8', 'int8-matmul', 'mixed')
>>> MODES["int8-matmul"].tags
('ptq-int8', 'mixed-precision', 'equalized')
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class QuantizationMode:
    name: str
    tags: tuple[str, ...]
    calibrated: bool = False
    integer_softmax: bool = False
    litert: bool = True
    recipe: bool = True
    qat_target: bool = False
    writer: str = "converter"


MODES = {mode.name: mode for mode in (
    QuantizationMode("float32", ("baseline", "teacher", "finetune")),
    QuantizationMode("float16", ("float16",)),
    QuantizationMode("dynamic", ("ptq-dynamic",)),
    QuantizationMode("int8", ("ptq-int8",), calibrated=True, integer_softmax=True, qat_target=True),
    QuantizationMode("16x8", ("ptq-16x8",), calibrated=True, integer_softmax=True, recipe=False),
    QuantizationMode("int8-matmul", ("ptq-int8", "mixed-precision", "equalized"), calibrated=True, qat_target=True),
    QuantizationMode("mixed", ("mixed-precision",), calibrated=True, litert=False),
    QuantizationMode("int4", ("int4",), qat_target=True, writer="ai-edge-quantizer"),
    QuantizationMode("int4-block32", ("int4",), qat_target=True, writer="ai-edge-quantizer"),
    QuantizationMode("dynamic-int4-tables", ("ptq-dynamic", "int4"), qat_target=True, writer="ai-edge-quantizer"),
)}


def names(**where) -> tuple[str, ...]:
    """Mode names, in registry order, whose fields equal `where` (e.g. `names(litert=True)`)."""
    unknown = sorted(set(where) - {f.name for f in dataclasses.fields(QuantizationMode)})
    if unknown:
        raise TypeError(f"QuantizationMode has no fields {unknown}")
    return tuple(m.name for m in MODES.values() if all(getattr(m, k) == v for k, v in where.items()))
