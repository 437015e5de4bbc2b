"""The one registry of quantization modes feeds export, the recipe schema, result tags and QAT targets."""

import pytest

from tfbertopt.export.int4 import LAYOUTS
from tfbertopt.export.litert import CALIBRATED, FULL_INTEGER, INT4, QUANTIZATIONS
from tfbertopt.quantizers.config import TARGETS
from tfbertopt.quantizers.modes import MODES, names
from tfbertopt.stages.export import QUANTIZATION_CHOICES, VARIANT_TAGS


def test_every_list_is_read_from_the_registry():
    assert QUANTIZATIONS == ("float32", "float16", "dynamic", "int8", "16x8", "int8-matmul", "int4", "int4-block32",
                             "dynamic-int4-tables")
    assert CALIBRATED == ("int8", "16x8", "int8-matmul") and FULL_INTEGER == ("int8", "16x8")
    assert "mixed" in QUANTIZATION_CHOICES and "16x8" not in QUANTIZATION_CHOICES     # 16x8: Python only
    assert TARGETS == ("int8", "int8-matmul", "int4", "int4-block32", "dynamic-int4-tables")
    assert INT4 == tuple(LAYOUTS) == ("int4", "int4-block32", "dynamic-int4-tables")    # each has a layout
    assert {name: tuple(tags) for name, tags in VARIANT_TAGS.items()} == {n: m.tags for n, m in MODES.items()}


def test_names_filters_by_fields_and_refuses_unknown_ones():
    assert names(litert=False) == ("mixed",)
    assert names(calibrated=False) == ("float32", "float16", "dynamic", "int4", "int4-block32",
                                         "dynamic-int4-tables")
    with pytest.raises(TypeError, match="no fields"):
        names(colour="red")
