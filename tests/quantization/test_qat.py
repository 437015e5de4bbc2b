"""quantize_model on a keras-hub BERT: exact weights, trained ranges, fit, save/load, pruning, distillation, export."""

import os

import keras
import keras_hub
import numpy as np
import pytest

from tfbertopt.data.pipeline import encode
from tfbertopt.kernels import find_kernels
from tfbertopt.models import tiny_classifier as tiny_classifier_of
from tfbertopt.quantization import (QuantizationConfig, activation_quantizers, activation_ranges, calibrate_ranges, is_quantized,
                                    quantize_model, uninitialized_quantizers)
from tfbertopt.train import finetune, predict_logits


@pytest.fixture()
def qat_model(tiny_classifier, demo_data):
    return quantize_model(tiny_classifier, calibration=demo_data[0], calibration_steps=32)


def test_quantize_model_copies_weights_and_calibrates_every_point(tiny_classifier, demo_data, qat_model):
    assert is_quantized(qat_model) and not is_quantized(tiny_classifier)
    float_kernels = {r.path: np.asarray(r.variable) for r in find_kernels(tiny_classifier)}
    for ref in find_kernels(qat_model):
        np.testing.assert_array_equal(np.asarray(ref.variable), float_kernels[ref.path])
    # per layer: 4 projections, scaled query, scores, context, FFN pre-GELU, GELU, FFN out... (14); embeddings: sum
    # and LayerNorm output; pooler: pre-activation and output
    assert len(activation_ranges(qat_model)) == 2 * 14 + 4
    assert not uninitialized_quantizers(qat_model)
    features = encode(demo_data[1].texts, tiny_classifier.preprocessor)
    diff = np.abs(predict_logits(qat_model, features) - predict_logits(tiny_classifier, features))
    assert 0 < diff.max() < 0.05                                             # quantization noise, no more


def test_layer_norm_internals_simulate_litert_int8_layer_norm(tiny_classifier, demo_data):
    from tfbertopt.layers import QuantizedLayerNormalization
    from tfbertopt.quantization import POINTS

    points = [p for p in POINTS if p not in ("matmul_inputs", "embedding_lookups")]   # the full-integer graph's
    qat = quantize_model(tiny_classifier, {"points": points}, calibration=demo_data[0], calibration_steps=16)
    norms = [l for l in qat.backbone._flatten_layers() if isinstance(l, QuantizedLayerNormalization)]
    assert len(norms) == 2 * 2 + 1                                        # 2 per layer + the embeddings'
    assert len(activation_ranges(qat)) == 2 * 14 + 4 + 9 * len(norms)
    assert all(np.isfinite(r).all() for r in activation_ranges(qat).values())


def test_points_choose_the_quantizers(tiny_classifier):
    linear_only = quantize_model(tiny_classifier, {"points": ["linear"]})
    paths = list(activation_quantizers(linear_only))
    assert paths and all("dense" in p or p.split("/")[-2] in ("query", "key", "value", "attention_output")
                         for p in paths)


def test_fit_trains_weights_and_moves_ranges(qat_model, demo_data):
    before = activation_ranges(qat_model)
    kernel = np.asarray(find_kernels(qat_model, roles=["ffn_output"])[0].variable).copy()
    finetune(qat_model, demo_data[0].take(64), None, epochs=1, batch_size=16, learning_rate=1e-3, verbose=0)
    after = activation_ranges(qat_model)
    assert set(after) == set(before) and any(after[k] != before[k] for k in before)
    assert not np.array_equal(np.asarray(find_kernels(qat_model, roles=["ffn_output"])[0].variable), kernel)


def test_save_load_is_exact_with_ranges(qat_model, demo_data, tmp_path):
    from tfbertopt.saving import load_model

    finetune(qat_model, demo_data[0].take(32), None, epochs=1, batch_size=16, verbose=0)
    path = os.path.join(tmp_path, "qat.keras")
    qat_model.save(path)
    loaded = load_model(path)
    assert is_quantized(loaded)
    assert activation_ranges(loaded) == activation_ranges(qat_model), _quantizer_states(loaded, qat_model)
    features = encode(demo_data[1].texts, qat_model.preprocessor)
    np.testing.assert_array_equal(predict_logits(loaded, features), predict_logits(qat_model, features))


def test_learned_weight_scales_train_and_save(tiny_classifier, demo_data, tmp_path):
    import dataclasses

    from tfbertopt.layers import QuantizedEinsumDense
    from tfbertopt.saving import load_model

    config = dataclasses.replace(QuantizationConfig.for_export("int4"), learned_weight_scales=True)
    model = quantize_model(tiny_classifier, config)
    ratios = lambda m: {w.path: np.asarray(w).copy() for w in m.weights if w.path.endswith("clip_ratio")}  # noqa
    before = ratios(model)
    assert len(before) == sum(isinstance(x, QuantizedEinsumDense) for x in model._flatten_layers())
    finetune(model, demo_data[0].take(64), None, epochs=1, batch_size=16, learning_rate=1e-2, verbose=0)
    after = ratios(model)
    assert any(not np.allclose(after[k], before[k]) for k in before)        # the scales are trained
    path = os.path.join(tmp_path, "learned.keras")
    model.save(path)
    loaded = load_model(path)
    assert all(np.array_equal(v, after[k]) for k, v in ratios(loaded).items()) and ratios(loaded).keys() == after.keys()
    features = encode(demo_data[1].texts, model.preprocessor)
    np.testing.assert_array_equal(predict_logits(loaded, features), predict_logits(model, features))


def _quantizer_states(loaded, trained) -> str:
    """Where two models' activation quantizers differ: path, built, observed and range of each (a failure report;
    this comparison failed once in a full parallel run, never alone)."""
    from tfbertopt.layers import ActivationQuantizer

    def states(model):
        return {getattr(getattr(q, "range_min", None), "path", q.name): (
            q.built, *(float(np.asarray(getattr(q, v))) for v in ("observed", "range_min", "range_max") if q.built))
            for q in model._flatten_layers(include_self=True, recursive=True)
            if isinstance(q, ActivationQuantizer) and q.fixed_range is None}

    a, b = states(loaded), states(trained)
    return f"loaded/trained differ: {[(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]}"


def test_pruned_zeros_stay_zero_through_qat(tiny_classifier, demo_data):
    from tfbertopt.pruning import ConstantSparsity, UpdatePruningStep, prune_low_magnitude, strip_pruning

    prune_low_magnitude(tiny_classifier, ConstantSparsity(0.5, 0))
    finetune(tiny_classifier, demo_data[0].take(32), None, epochs=1, batch_size=16, verbose=0,
             callbacks=[UpdatePruningStep()])
    strip_pruning(tiny_classifier)
    zeros = {r.path: np.asarray(r.variable) == 0 for r in find_kernels(tiny_classifier, roles="encoder")}
    qat = quantize_model(tiny_classifier, calibration=demo_data[0], calibration_steps=16)
    finetune(qat, demo_data[0].take(64), None, epochs=1, batch_size=16, learning_rate=1e-3, verbose=0)
    for ref in find_kernels(qat, roles="encoder"):
        value = np.asarray(ref.variable)
        assert np.all(value[zeros[ref.path]] == 0), ref.path
        assert np.mean(value == 0) == pytest.approx(0.5, abs=0.01)


def test_qat_student_trains_through_the_distiller(tiny_classifier, demo_data):
    teacher = keras.models.clone_model(tiny_classifier)
    teacher.set_weights(tiny_classifier.get_weights())
    student = quantize_model(tiny_classifier, calibration=demo_data[0], calibration_steps=16)
    before = activation_ranges(student)
    history = finetune(student, demo_data[0].take(32), None, epochs=1, batch_size=16, verbose=0, teacher=teacher)
    assert "kd_logits_loss" in history.history
    assert activation_ranges(student) != before


def test_bad_input_is_refused_by_name(tiny_classifier, qat_model):
    with pytest.raises(ValueError, match="already quantization-aware"):
        quantize_model(qat_model)
    with pytest.raises(ValueError, match="unknown quantization points"):
        quantize_model(tiny_classifier, {"points": ["everything"]})
    backbone = keras_hub.models.DistilBertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
                                                   intermediate_dim=16)
    distil = keras_hub.models.DistilBertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    assert type(quantize_model(distil)) is type(distil)     # every family tfbertopt.surgery reads
    assert type(quantize_model(tiny_classifier_of("deberta_v3"))).__name__ == "DebertaV3TextClassifier"
    with pytest.raises(ValueError, match="no activation quantizers"):
        calibrate_ranges(tiny_classifier, {"token_ids": np.ones((2, 16), "int32")})
