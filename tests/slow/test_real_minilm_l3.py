"""Real-model check (slow; `python -m pytest -m slow`): the pretrained paraphrase-MiniLM-L3-v2 converted from its
ONNX file by `tfbertopt setup-model minilm-l3` gives ONNX Runtime's sequence output in keras-hub."""

import importlib.metadata
import importlib.util

import numpy as np
import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")]

SENTENCES = ["a gripping, funny and touching film.", "the plot is thin and the acting is worse.",
             "Café résumé cliché!", "it 's a charming and often affecting journey ."]


@pytest.fixture(scope="module")
def l3():
    from tfbertopt import models

    try:
        models.alias_path("minilm-l3")
    except models.ModelSourceError:
        pytest.skip("run `tfbertopt setup-model minilm-l3` first")
    return models.load_classifier("minilm-l3", num_classes=2, sequence_length=32)


def test_matches_onnx_runtime(l3):
    import keras
    import onnxruntime

    from tfbertopt.models import ALIASES

    spec = ALIASES["minilm-l3"]
    path = importlib.metadata.distribution(spec["distribution"]).locate_file(spec["file"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = l3.preprocessor(SENTENCES)
    x = x[0] if isinstance(x, tuple) else x
    ids, mask = np.asarray(x["token_ids"]).astype(np.int64), np.asarray(x["padding_mask"]).astype(np.int64)
    reference = next(o for o in session.run(None, {"input_ids": ids, "attention_mask": mask}) if o.ndim == 3)
    real = mask.astype(bool)
    sequence = np.asarray(l3.backbone(x)["sequence_output"])
    # keras-hub's BERT uses tanh-approximate GELU, the original exact GELU: close, not equal.
    assert np.abs(sequence - reference)[real].max() < 5e-3
    dense = [layer._feedforward_intermediate_dense for layer in l3.backbone.transformer_layers]
    approximate = [d.activation for d in dense]
    for d in dense:
        d.activation = lambda t: keras.activations.gelu(t, approximate=False)
    try:
        exact = np.asarray(l3.backbone(x)["sequence_output"])
    finally:
        for d, activation in zip(dense, approximate):
            d.activation = activation
    assert np.abs(exact - reference)[real].max() < 1e-5
