"""IntermediateModel: one forward pass giving embeddings, hidden states, attention and logits, on shared weights."""

import keras
import keras_hub
import numpy as np
import pytest

from tfbertopt.data.pipeline import encode
from tfbertopt.distillation.internals import AttentionUnavailableError, IntermediateModel, supports_attention
from tfbertopt.kernels import UnsupportedModelError, encoder_layers


@pytest.fixture()
def features(tiny_classifier, demo_data):
    x = encode(demo_data[1].texts[:8], tiny_classifier.preprocessor)
    assert (x["padding_mask"] == 0).any()          # the batch has padding to check the masks against
    return x


def test_bert_internals_match_the_model(tiny_classifier, features):
    internals = IntermediateModel(tiny_classifier)
    out = internals(features)
    assert internals.num_layers == 2 and len(out["hidden_states"]) == 2 and len(out["attentions"]) == 2
    np.testing.assert_allclose(out["logits"], tiny_classifier(features), atol=1e-5)
    np.testing.assert_allclose(out["hidden_states"][-1], tiny_classifier.backbone(features)["sequence_output"],
                               atol=1e-5)
    mask = features["padding_mask"]
    for probs in out["attentions"]:
        probs = np.asarray(probs)
        assert probs.shape == (8, 2, mask.shape[1], mask.shape[1])
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)                   # a distribution over keys
        assert np.all(probs[np.broadcast_to((mask == 0)[:, None, None, :], probs.shape)] == 0.0)  # padded keys
    assert tuple(out["embedding"].shape) == (8, mask.shape[1], 32)


def test_shares_weights_and_creates_none(tiny_classifier):
    internals = IntermediateModel(tiny_classifier)
    ids = {id(v) for v in tiny_classifier.weights}
    assert internals.weights and all(id(v) in ids for v in internals.weights)
    tiny_classifier.output_dense.kernel.assign(np.zeros(tiny_classifier.output_dense.kernel.shape))
    x = {"token_ids": np.array([[2, 7, 3]]), "segment_ids": np.zeros((1, 3), "int32"),
         "padding_mask": np.ones((1, 3), "int32")}
    np.testing.assert_allclose(internals(x)["logits"], tiny_classifier.output_dense.bias[None, :], atol=1e-6)


def test_without_attention_and_on_a_backbone(tiny_classifier, features):
    internals = IntermediateModel(tiny_classifier, attention=False)
    out = internals(features)
    assert "attentions" not in out and internals.num_heads is None
    np.testing.assert_allclose(out["logits"], tiny_classifier(features), atol=1e-5)
    backbone_out = IntermediateModel(tiny_classifier.backbone)(features)
    assert "logits" not in backbone_out and len(backbone_out["attentions"]) == 2


def _tiny(family, num_layers=2, **kwargs):
    backbone_cls = getattr(keras_hub.models, f"{family}Backbone")
    task_cls = getattr(keras_hub.models, f"{family}TextClassifier")
    backbone = backbone_cls(vocabulary_size=64, num_layers=num_layers, num_heads=2, hidden_dim=16,
                            intermediate_dim=32, max_sequence_length=16, **kwargs)
    return task_cls(backbone=backbone, num_classes=3, preprocessor=None)


@pytest.mark.parametrize("family,kwargs,calls", [
    ("DistilBert", {}, 2),
    ("Roberta", {}, 2),
    ("Albert", {"embedding_dim": 8, "num_groups": 2, "num_inner_repetitions": 1}, 4),
])
def test_other_families(family, kwargs, calls, features):
    model = _tiny(family, num_layers=4 if family == "Albert" else 2, **kwargs)
    internals = IntermediateModel(model)
    x = internals.select_inputs(features)
    if family in ("DistilBert", "Roberta"):
        assert "segment_ids" not in x                     # BERT features feed a model without segments
    out = internals(x)
    assert len(out["hidden_states"]) == calls == internals.num_layers
    np.testing.assert_allclose(out["logits"], model(x), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["attentions"][-1]).sum(-1), 1.0, atol=1e-5)


def test_deberta_v3_raw_and_compressed(features):
    """DeBERTa-v3's layers read the backbone's shared relative-position embeddings; keras-hub's cannot return
    attention probabilities, tfbertopt's compressed ones can."""
    from tfbertopt.surgery import as_compressed

    model = _tiny("DebertaV3", bucket_size=4)
    with pytest.raises(AttentionUnavailableError, match="DebertaV3Backbone"):
        IntermediateModel(model)
    for view in (IntermediateModel(model, attention=False), IntermediateModel(as_compressed(model))):
        x = view.select_inputs(features)
        out = view(x)
        assert len(out["hidden_states"]) == 2 == view.num_layers
        np.testing.assert_allclose(out["logits"], model(x), atol=1e-5)
        np.testing.assert_allclose(out["hidden_states"][-1], model.backbone(x), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["attentions"][-1]).sum(-1), 1.0, atol=1e-5)


def test_select_inputs_fills_segment_ids(tiny_classifier):
    internals = IntermediateModel(tiny_classifier, attention=False)
    x = internals.select_inputs({"token_ids": np.array([[2, 5, 3]]), "padding_mask": np.ones((1, 3), "int32")})
    assert np.all(np.asarray(x["segment_ids"]) == 0)
    with pytest.raises(TypeError, match="dict of token tensors"):
        internals.select_inputs(np.zeros((1, 3)))


def test_a_model_that_cannot_give_attention(tiny_classifier, monkeypatch):
    layer = encoder_layers(tiny_classifier)[0]
    plain = layer.call
    monkeypatch.setattr(layer, "call", lambda inputs, padding_mask=None, training=None: plain(inputs, padding_mask))
    assert not supports_attention(tiny_classifier)
    with pytest.raises(AttentionUnavailableError, match="BertBackbone.*cannot return attention"):
        IntermediateModel(tiny_classifier)
    IntermediateModel(tiny_classifier, attention=False)     # hidden states still work


def test_unsupported_models():
    inputs = keras.Input((4,))
    with pytest.raises(UnsupportedModelError, match="not a keras-hub task model or backbone"):
        IntermediateModel(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
