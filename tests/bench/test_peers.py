"""Peer rows: Keras' own `quantize` on a copy of the model, exported and verified, or recorded as a failure."""

import numpy as np
import pytest

from tfbertopt.bench.peers import KERAS_MODES, keras_quantize_rows
from tfbertopt.data.demo import demo_examples, demo_vocabulary
from tfbertopt.factorization import factorize_embeddings
from tfbertopt.models import tiny_bert_classifier
from tfbertopt.quantization import quantize_model


def test_keras_quantize_rows_leave_the_model_float_and_lose_no_mode(tmp_path):
    model = factorize_embeddings(tiny_bert_classifier(demo_vocabulary(), hidden_dim=32, intermediate_dim=64,
                                                      sequence_length=16), 16)
    before = {w.path: (w.dtype, np.asarray(w)) for w in model.weights}
    failures = []
    rows = keras_quantize_rows(model, demo_examples("dev", 48), tmp_path, prefix="m-", sequence_length=16,
                               log=lambda _: None, failures=failures)
    assert {w.path: w.dtype for w in model.weights} == {p: d for p, (d, _) in before.items()}
    assert all(np.array_equal(np.asarray(w), before[w.path][1]) for w in model.weights)
    assert sorted([r["variant"] for r in rows] + [f["variant"] for f in failures]) == sorted(
        "m-" + v for v in KERAS_MODES)
    int4 = {r["variant"]: r for r in rows}["m-keras-int4"]     # Keras' int4 graph converts (int8's does not, today)
    assert int4["verified"] and int4["quantization"] == "int4" and "keras-quantize" in int4["tags"]
    assert (tmp_path / "m-keras-int4_int4.tflite").exists()
    for failure in failures:
        assert failure["error"] and "\n" not in failure["error"] and 0.0 <= failure["keras_score"] <= 1.0


def test_keras_quantize_rows_refuse_a_quantization_aware_model(tmp_path):
    model = quantize_model(tiny_bert_classifier(demo_vocabulary(), hidden_dim=32, intermediate_dim=64,
                                                sequence_length=16))
    with pytest.raises(ValueError, match="already quantization-aware"):
        keras_quantize_rows(model, demo_examples("dev", 8), tmp_path, log=lambda _: None)
