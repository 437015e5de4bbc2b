"""Mixed-precision int8 LiteRT export: sensitivity, budgets, denylists honoured, same signature, loud bad budgets."""

import numpy as np
import pytest

from tfbertopt.export.mixed_precision import MixedPrecision, classify_tensor, export_mixed_precision
from tfbertopt.export.verify import verify_litert


@pytest.fixture(scope="module")
def drifting():
    """A tiny BERT on which plain int8 drifts: unit-variance random weights (input-dependent logits), a classifier
    bias centred on the dev set's median logit gap, and Keras' -1e9 attention mask (attention_masking="keras"),
    which makes int8 attention uniform, so int8 flips many labels."""
    import keras

    from tfbertopt.data.demo import demo_examples, demo_vocabulary
    from tfbertopt.data.pipeline import encode
    from tfbertopt.models import tiny_bert_classifier
    from tfbertopt.train import predict_logits

    keras.utils.set_random_seed(0)
    clf = tiny_bert_classifier(demo_vocabulary(), num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64,
                               sequence_length=16)
    train, dev = demo_examples("train", 256), demo_examples("dev", 64)
    rng = np.random.default_rng(0)
    for w in clf.backbone.weights:
        if len(w.shape) >= 2:
            fan_in = 1 if "embedding" in w.path else w.shape[0]
            w.assign(rng.standard_normal(w.shape).astype("float32") / np.sqrt(fan_in))
    logits = predict_logits(clf, encode(dev.texts, clf.preprocessor))
    bias = clf.output_dense.bias.numpy()
    bias[1] -= np.median(logits[:, 1] - logits[:, 0])
    clf.output_dense.bias.assign(bias)
    mp = MixedPrecision(clf, train, sequence_length=16, calibration_steps=32, holdout=dev, attention_masking="keras")
    return clf, train, dev, mp


def test_classify_tensor_groups_bert_ops():
    layer = "bert_text_classifier_1/bert_backbone_1/transformer_layer_3_1/"
    assert classify_tensor(layer + "self_attention_layer_1/query_1/MatMul;x/Mul", "FULLY_CONNECTED") == (
        "layer_3", "attention_qkv")
    assert classify_tensor(layer + "self_attention_layer_1/MatMul", "BATCH_MATMUL") == ("layer_3", "attention_scores")
    assert classify_tensor(layer + "self_attention_layer_1/MatMul_1", "BATCH_MATMUL") == (
        "layer_3", "attention_context")
    assert classify_tensor(layer + "self_attention_layer_1/softmax_1/Softmax", "SOFTMAX") == ("layer_3", "softmax")
    assert classify_tensor(layer + "add", "ADD") == ("layer_3", "attention_residual")
    assert classify_tensor(layer + "add_1", "ADD") == ("layer_3", "ffn_residual")
    assert classify_tensor(layer + "feedforward_layer_norm_1/moments/mean", "MEAN") == ("layer_3", "ffn_layernorm")
    assert classify_tensor(layer + "feedforward_intermediate_dense_1/Gelu/mul_3;", "GELU") == ("layer_3", "gelu")
    assert classify_tensor("b/bert_backbone_1/embeddings_layer_norm_1/add_2", "ADD") == ("embeddings", "layernorm")
    assert classify_tensor("b/bert_backbone_1/pooled_dense_1/MatMul1", "FULLY_CONNECTED") == ("head", "pooler")
    assert classify_tensor("StatefulPartitionedCall:0", "FULLY_CONNECTED") == ("head", "classifier")


def test_denylist_is_honoured_and_the_export_verifies(tiny_classifier, demo_data, tmp_path):
    """Denylisted op kinds and nodes run in float in the written file (op_report), which keeps the int32-in /
    float-out signature of every export and passes the quantized verifier."""
    from ai_edge_litert.interpreter import Interpreter

    from tfbertopt.train import finetune

    train, dev = demo_data
    finetune(tiny_classifier, train, epochs=1, batch_size=16, learning_rate=3e-3, max_steps=8, verbose=0)
    mp = MixedPrecision(tiny_classifier, train, sequence_length=16, calibration_steps=16, holdout=dev)
    gelu = [n.tensor_name for n in mp.nodes if n.op_name == "GELU"][0]
    qkv = [n.tensor_name for n in mp.nodes if n.kind == "attention_qkv" and n.layer == "layer_1"]
    selection = mp.select(max_float_ops=0, denylisted_ops=["SOFTMAX"], denylisted_nodes=[gelu] + qkv)
    result = mp.export(tmp_path / "m_mixed.tflite", selection)
    report = result.export.op_report
    assert report.counts["SOFTMAX"]["float32"] == report.op_counts["SOFTMAX"] == 3  # 2 attention + output
    assert report.counts["GELU"] == {"float32": 1, "int8": 1}
    float_names = {op.output_name for op in report.float_ops}
    assert gelu in float_names and set(qkv) <= float_names
    assert report.counts["FULLY_CONNECTED"]["int8"] == report.op_counts["FULLY_CONNECTED"] - 3
    assert not [op for op in result.export.ops if op.startswith("Flex") or op in ("CUSTOM", "NumericVerify")]
    runner = Interpreter(model_path=result.path).get_signature_runner("serving_default")
    assert {k: v["dtype"] for k, v in runner.get_input_details().items()} == dict.fromkeys(
        ("token_ids", "padding_mask", "segment_ids"), np.int32)
    assert {k: v["dtype"] for k, v in runner.get_output_details().items()} == {"logits": np.float32,
                                                                                "probabilities": np.float32}
    verification = verify_litert(result.path, tiny_classifier, dev, quantized=True)
    assert verification.passed, verification.summary()
    plain = mp.export(tmp_path / "m_int8.tflite", mp.select(max_float_ops=0))
    assert plain.export.op_report.float_op_count < report.float_op_count
    assert plain.export.size_bytes < result.export.size_bytes  # float weights of the denylisted FCs
    assert "SOFTMAX" in selection.summary() or selection.denylisted_ops == ["SOFTMAX"]


def test_debugger_and_sensitivity_cover_every_group(drifting):
    _, _, _, mp = drifting
    stats = mp.debugger_statistics()
    assert stats and all(np.isfinite(v["rmse"]) for v in stats.values())
    sensitivity = mp.sensitivity()
    assert {g.group for g in sensitivity} == set(mp.groups())
    assert sum(g.num_ops for g in sensitivity) == len(mp.nodes)
    gains = [g.gain for g in sensitivity]
    assert gains == sorted(gains, reverse=True) and gains[0] > 0
    assert {"layer_0/softmax", "layer_1/ffn_layernorm", "embeddings/layernorm", "head/classifier"} <= set(mp.groups())


def test_stricter_budgets_keep_more_ops_float_and_improve_agreement(drifting, tmp_path):
    clf, _, dev, mp = drifting
    plain = mp.evaluate()
    assert plain.label_agreement < 0.9  # plain int8 drifts on this model
    loose = mp.select(min_agreement=plain.label_agreement)
    strict = mp.select(min_agreement=0.95)
    assert loose.num_float_ops == 0 and loose.budget_met
    assert strict.num_float_ops > loose.num_float_ops
    assert strict.budget_met and strict.evaluation.label_agreement >= 0.95 > plain.label_agreement
    small, large = mp.select(max_float_ops=4), mp.select(max_float_ops=40)
    assert small.num_float_ops <= 4 < large.num_float_ops <= 40
    assert large.evaluation.mean_logit_error <= plain.mean_logit_error
    # The written file reproduces what the selection measured (the holdout is the dev set here).
    result = mp.export(tmp_path / "strict_int8.tflite", strict)
    report = verify_litert(result.path, clf, dev, quantized=True, min_agreement=0.95)
    assert report.passed and report.label_agreement == pytest.approx(strict.evaluation.label_agreement)
    assert result.export.op_report.float_op_count >= strict.num_float_ops
    assert "float:" in strict.summary() and strict.to_dict()["float_nodes"] == strict.num_float_ops


@pytest.mark.parametrize("budget, message", [
    ({}, "give exactly one budget"),
    ({"max_float_ops": 3, "min_agreement": 0.9}, "give exactly one budget"),
    ({"max_float_ops": -1}, "max_float_ops must be a non-negative integer"),
    ({"max_float_ops": 2.5}, "max_float_ops must be a non-negative integer"),
    ({"max_float_ops": True}, "max_float_ops must be a non-negative integer"),
    ({"min_agreement": 0}, r"min_agreement is a label-agreement fraction in \(0, 1\]"),
    ({"min_agreement": 99}, r"min_agreement is a label-agreement fraction in \(0, 1\]"),
    ({"max_logit_error": 0.0}, "max_logit_error is a positive, finite"),
    ({"max_logit_error": float("nan")}, "max_logit_error is a positive, finite"),
])
def test_bad_budgets_fail_before_any_conversion(budget, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        export_mixed_precision(object(), tmp_path / "m.tflite", calibration=None, **budget)
    assert not (tmp_path / "m.tflite").exists()


def test_bad_denylists_and_granularity_are_named(drifting, tiny_classifier):
    _, _, _, mp = drifting
    with pytest.raises(ValueError, match=r"denylisted_ops \['CONV_2D'\] match no op"):
        mp.select(max_float_ops=0, denylisted_ops=["CONV_2D"])
    with pytest.raises(ValueError, match=r"denylisted_nodes \['no/such/tensor'\] are not output tensors"):
        mp.select(max_float_ops=0, denylisted_nodes=["no/such/tensor"])
    with pytest.raises(ValueError, match="unknown granularity 'block'"):
        MixedPrecision(tiny_classifier, {}, granularity="block")
    with pytest.raises(ValueError, match="needs a calibration set"):
        MixedPrecision(tiny_classifier, None, sequence_length=16)
