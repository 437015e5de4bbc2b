"""DistillationConfig: validation with clear messages, and a lossless config round trip."""

import json

import pytest

from tfbertopt.distillation import DistillationConfig


def test_defaults_are_hinton():
    config = DistillationConfig()
    assert config.active_terms() == ["hard", "logits"] and config.logits == "kl"


def test_round_trip_through_json_with_a_dict_layer_map():
    config = DistillationConfig(hard_label_weight=0.0, logits="mse", hidden="cosine", hidden_weight=2,
                                attention="kl", attention_weight=0.5, embedding_weight=1.0, cls_weight=0.1,
                                layer_map={0: 3, 1: 7}, temperature=3)
    restored = DistillationConfig.from_config(json.loads(json.dumps(config.get_config())))
    assert restored == config and restored.layer_map == {0: 3, 1: 7}
    assert restored.active_terms() == ["logits", "hidden", "attention", "embedding", "cls"]


@pytest.mark.parametrize("field", ["hard_label_weight", "logits_weight", "hidden_weight", "attention_weight",
                                   "embedding_weight", "cls_weight"])
def test_negative_weights(field):
    with pytest.raises(ValueError, match=f"{field} must be >= 0"):
        DistillationConfig(**{field: -0.1})


@pytest.mark.parametrize("field,value,suggestion", [("logits", "kld", "kl"), ("hidden", "cosin", "cosine"),
                                                    ("attention", "mes", "mse")])
def test_unknown_loss_names_suggest_the_closest(field, value, suggestion):
    with pytest.raises(ValueError, match=f"unknown {field} loss '{value}'.*did you mean '{suggestion}'"):
        DistillationConfig(**{field: value})


def test_all_weights_zero():
    with pytest.raises(ValueError, match="every loss weight is zero"):
        DistillationConfig(hard_label_weight=0.0, logits_weight=0.0)
    with pytest.raises(ValueError, match="every loss weight is zero"):
        DistillationConfig(hard_label_weight=0.0, logits=None, hidden_weight=1.0)   # hidden loss is None


@pytest.mark.parametrize("temperature", [0, -1.0, "2"])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        DistillationConfig(temperature=temperature)


def test_bad_layer_map():
    with pytest.raises(ValueError, match="did you mean 'last'"):
        DistillationConfig(layer_map="lats")
    with pytest.raises(ValueError, match="negative"):
        DistillationConfig(layer_map={0: -2})


def test_unknown_field():
    with pytest.raises(ValueError, match="unknown DistillationConfig fields"):
        DistillationConfig.from_config({"tempreature": 2.0})
