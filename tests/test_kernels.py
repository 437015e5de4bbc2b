"""Kernel discovery on every keras-hub BERT family tfbertopt supports."""

import keras
import keras_hub
import numpy as np
import pytest

from tfbertopt.kernels import (
    ENCODER_DENSE_ROLES,
    ROLES,
    UnsupportedModelError,
    count_macs,
    count_params,
    encoder_shapes,
    expand_roles,
    find_kernels,
)
from tfbertopt.models import electra_classifier

H, I, HEADS, L, V = 16, 32, 2, 3, 50


def _classifier(family):
    common = dict(num_layers=L, num_heads=HEADS, hidden_dim=H, intermediate_dim=I)
    if family == "Electra":
        backbone = keras_hub.models.ElectraBackbone(vocab_size=V, embedding_dim=8, **common)
        return electra_classifier(backbone, 3)
    if family == "Albert":
        backbone = keras_hub.models.AlbertBackbone(vocabulary_size=V, embedding_dim=8, num_groups=L,
                                                   num_inner_repetitions=1, **common)
    else:
        backbone = getattr(keras_hub.models, family + "Backbone")(vocabulary_size=V, **common)
    return getattr(keras_hub.models, family + "TextClassifier")(backbone=backbone, num_classes=3,
                                                                 preprocessor=None)


FAMILIES = ["Bert", "DistilBert", "Albert", "Roberta", "Electra"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_encoder_kernel_found_with_role_and_index(family):
    clf = _classifier(family)
    refs = find_kernels(clf, roles="encoder")
    assert len(refs) == L * len(ENCODER_DENSE_ROLES)
    for i in range(L):
        layer_refs = {r.role: r for r in refs if r.layer_index == i}
        assert set(layer_refs) == set(ENCODER_DENSE_ROLES)
        assert layer_refs["attention_query"].shape == (H, HEADS, H // HEADS)
        assert layer_refs["attention_output"].shape == (HEADS, H // HEADS, H)
        assert layer_refs["ffn_intermediate"].shape == (H, I)
        assert layer_refs["ffn_output"].shape == (I, H)
        # The variable is the live model weight, not a copy.
        assert any(layer_refs["ffn_output"].variable is w for w in clf.weights)
    assert len({id(r.variable) for r in refs}) == len(refs)


@pytest.mark.parametrize("family", FAMILIES)
def test_embeddings_head_and_norms(family):
    clf = _classifier(family)
    roles = [r.role for r in find_kernels(clf)]
    assert roles.count("token_embedding") == 1
    assert roles.count("position_embedding") == 1
    assert roles.count("classifier") == 1
    assert roles.count("attention_layer_norm") == L
    assert roles.count("ffn_layer_norm") == L
    assert ("segment_embedding" in roles) == (family in ("Bert", "Albert", "Electra"))
    assert ("embedding_projection" in roles) == (family in ("Albert", "Electra"))
    token = find_kernels(clf, roles=["token_embedding"])[0]
    assert token.shape[0] == V
    classifier = find_kernels(clf, roles=["classifier"])[0]
    assert classifier.shape[-1] == 3
    assert set(roles) <= set(ROLES)


def test_every_trainable_weight_matrix_is_named():
    """Nothing >= 2-D in the model escapes discovery (biases, 2-D for attention, are not kernels)."""
    clf = _classifier("Bert")
    found = {id(r.variable) for r in find_kernels(clf)}
    missed = [w.path for w in clf.weights if len(w.shape) >= 2 and id(w) not in found and "bias" not in w.path]
    assert missed == []


def test_filters_by_layer_negative_index_and_regex():
    clf = _classifier("Bert")
    last = find_kernels(clf, roles=["ffn"], layers=[-1])
    assert [(r.role, r.layer_index) for r in last] == [("ffn_intermediate", L - 1), ("ffn_output", L - 1)]
    q = find_kernels(clf, pattern=r"transformer_layer_1/.*query")
    assert [(r.role, r.layer_index) for r in q] == [("attention_query", 1)]
    assert find_kernels(clf, pattern="no-such-weight") == []


def test_bad_filters_raise():
    clf = _classifier("Bert")
    with pytest.raises(ValueError, match="unknown kernel role 'atention'"):
        find_kernels(clf, roles=["atention"])
    with pytest.raises(ValueError, match="outside the encoder's 3 layers"):
        find_kernels(clf, layers=[3])


def test_expand_roles_groups():
    assert expand_roles(["attention"]) == {"attention_query", "attention_key", "attention_value",
                                           "attention_output"}
    assert expand_roles("classifier") == {"classifier"}


def test_unsupported_models_rejected():
    seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(UnsupportedModelError, match="Sequential is not a keras-hub"):
        find_kernels(seq)
    gpt2 = keras_hub.models.GPT2Backbone(vocabulary_size=20, num_layers=1, num_heads=2, hidden_dim=8,
                                         intermediate_dim=16, max_sequence_length=8)
    with pytest.raises(UnsupportedModelError, match="GPT2Backbone has no"):
        find_kernels(gpt2)


def test_backbone_accepted_directly():
    backbone = _classifier("Bert").backbone
    assert len(find_kernels(backbone, roles="encoder")) == L * 6
    assert find_kernels(backbone, roles=["classifier"]) == []


def test_count_macs_matches_formula():
    clf = _classifier("Bert")
    s = 8
    per_layer = 4 * s * H * H + 2 * s * H * I + 2 * s * s * H
    head = H * H + H * 3
    assert count_macs(clf, s) == L * per_layer + head


def test_count_macs_adds_deberta_position_scores():
    bucket = 4
    backbone = keras_hub.models.DebertaV3Backbone(vocabulary_size=V, num_layers=L, num_heads=HEADS, hidden_dim=H,
                                                  intermediate_dim=I, max_sequence_length=16, bucket_size=bucket)
    s = 8
    per_layer = 4 * s * H * H + 2 * s * H * I + 2 * s * s * H + 2 * s * 2 * bucket * H   # + c2p and p2c
    assert count_macs(backbone, s) == L * per_layer


def test_count_macs_albert_counts_shared_layer_per_repetition():
    common = dict(num_layers=4, num_heads=HEADS, hidden_dim=H, intermediate_dim=I)
    shared = keras_hub.models.AlbertBackbone(vocabulary_size=V, embedding_dim=8, num_groups=1,
                                             num_inner_repetitions=1, **common)
    separate = keras_hub.models.AlbertBackbone(vocabulary_size=V, embedding_dim=8, num_groups=4,
                                               num_inner_repetitions=1, **common)
    assert count_macs(shared, 8) == count_macs(separate, 8)
    assert count_params(shared) < count_params(separate)


def test_count_params_matches_keras_and_shapes():
    clf = _classifier("Roberta")
    assert count_params(clf) == clf.count_params()
    assert encoder_shapes(clf) == [{"hidden_dim": H, "num_heads": HEADS, "head_dim": H // HEADS,
                                    "intermediate_dim": I}] * L


def test_refs_see_weight_updates():
    clf = _classifier("DistilBert")
    ref = find_kernels(clf, roles=["ffn_output"], layers=[0])[0]
    ref.variable.assign(np.zeros(ref.shape, "float32"))
    assert float(np.abs(np.asarray(clf.backbone.get_layer("transformer_layer_0")
                                   ._feedforward_output_dense.kernel)).sum()) == 0.0
