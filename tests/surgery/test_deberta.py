"""DeBERTa-v3 in the surgery core: the compressed encoder computes keras-hub's disentangled attention exactly.

The conformance matrix runs every method on a tiny random DeBERTa-v3, whose initial query and key kernels make
every head attend almost uniformly; these tests give the attention real scores (and sequences longer than the
relative-position buckets) so that the content-to-position and position-to-content terms decide the output.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.surgery import zero_dropped

from tfbertopt.kernels import find_kernels
from tfbertopt.models import tiny_classifier
from tfbertopt.pruning.structured import full_plan, shrink
from tfbertopt.surgery import as_compressed, describe
from tfbertopt.train import predict_logits


@pytest.fixture(scope="module")
def deberta():
    clf = tiny_classifier("deberta_v3", num_layers=2, hidden_dim=16, num_heads=4, intermediate_dim=32,
                          sequence_length=32)
    rng = np.random.default_rng(0)
    for ref in find_kernels(clf, roles=["attention_query", "attention_key", "relative_embedding"]):
        ref.variable.assign(rng.normal(0.0, 0.5, size=ref.shape).astype("float32"))
    clf.output_dense.kernel.assign(np.asarray(clf.output_dense.kernel) * 200.0)
    return clf


def _inputs(length, n=4, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, length + 1, size=n)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    return {"token_ids": rng.integers(4, 40, size=(n, length)).astype("int32") * mask, "padding_mask": mask}


def test_description(deberta):
    config = describe(deberta).config
    assert (config["attention"], config["bucket_size"], config["absolute_positions"]) == ("disentangled", 8, False)
    assert (config["num_segments"], config["pooler"], config["layer_norm_epsilon"]) == (0, False, 1e-7)


@pytest.mark.parametrize("length", [3, 9, 32])     # within the buckets, in the log buckets, clipped to the table
def test_compressed_copy_equals_keras_hub(deberta, length):
    copy = as_compressed(deberta)
    assert type(copy).__name__ == "DebertaV3TextClassifier"
    assert len(copy.backbone.weights) == len(deberta.backbone.weights)     # one relative table, shared
    x = _inputs(length)
    np.testing.assert_allclose(np.asarray(copy.backbone(x)), np.asarray(deberta.backbone(x)), atol=1e-5)
    np.testing.assert_allclose(predict_logits(copy, x), predict_logits(deberta, x), atol=1e-4)


def test_relative_positions_are_keras_hubs():
    from keras_hub.src.models.deberta_v3.disentangled_self_attention import (
        DisentangledSelfAttention,
    )

    from tfbertopt.layers import DisentangledAttention

    for buckets, max_positions in ((8, 32), (256, 512), (3, 16)):
        ours = DisentangledAttention(num_heads=1, key_dim=4, bucket_size=buckets, max_position_embeddings=max_positions)
        theirs = DisentangledSelfAttention(num_heads=1, hidden_dim=4, bucket_size=buckets,
                                           max_position_embeddings=max_positions)
        for length in (1, 7, 40, 300):
            np.testing.assert_array_equal(np.asarray(ours.relative_positions(length)),
                                          np.asarray(theirs._get_rel_pos(length))[0, 0])


def test_pruned_heads_equal_zeroed_heads(deberta):
    plan = full_plan(deberta)
    plan.heads = {0: [1, 3], 1: [2]}
    plan.neurons = {0: list(range(0, 32, 3)), 1: list(range(32))}
    small = shrink(deberta, plan)
    assert [layer._self_attention_layer.num_heads for layer in small.backbone.transformer_layers] == [2, 1]
    reference = as_compressed(deberta)
    zero_dropped(reference, plan)
    x = _inputs(20)
    np.testing.assert_allclose(predict_logits(small, x), predict_logits(reference, x), atol=1e-4)


def test_quantization_aware_export_folds_the_relative_positions(deberta, tmp_path):
    """Each layer's query and key projections of the relative-position table are constants of the exported graph:
    a full-integer file from the quantization-aware model runs no FULLY_CONNECTED for them."""
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.verify import run_litert
    from tfbertopt.quantization import quantize_model

    x = _inputs(16, n=32, seed=1)
    qat = quantize_model(deberta, calibration=x, calibration_steps=32)
    result = export_litert(qat, tmp_path / "qat.tflite", "int8", 16, calibration=x)
    assert result.ops["FULLY_CONNECTED"] == 6 * 2 + 2            # 6 projections per layer, then the head's two
    agreement = np.mean(run_litert(result.path, x).argmax(-1) == predict_logits(qat, x).argmax(-1))
    assert agreement >= 0.9
