"""Structured pruning: importance, plans, and a shrink that is exactly the masked model, only smaller."""

import keras
import numpy as np
import pytest

from tfbertopt.data.pipeline import encode
from tfbertopt.kernels import encoder_layers, encoder_shapes, find_kernels
from tfbertopt.pruning.structured import (
    StructurePlan,
    full_plan,
    plan_by_importance,
    plan_drop_layers,
    shrink,
    structure_importance,
    with_layerdrop,
)
from tfbertopt.saving import load_model
from tfbertopt.train import finetune, predict_logits


@pytest.fixture()
def bert4():
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    return tiny_bert_classifier(demo_vocabulary(), num_layers=4, hidden_dim=32, num_heads=4, intermediate_dim=64,
                                sequence_length=16, seed=3)


@pytest.fixture()
def dev_features(bert4, demo_data):
    return encode(demo_data[1].texts, bert4.preprocessor)


def zero_pruned_rows(model, plan):
    """Zeroes, in `model` itself, the output-projection rows of the heads and FFN neurons `plan` drops from the
    layers it keeps: the masked model that a shrink must equal."""
    for i, encoder in enumerate(encoder_layers(model)):
        if i not in plan.layers:
            continue
        attention = encoder._self_attention_layer
        for kernel, kept, n in ((attention._output_dense.kernel, plan.heads[i], attention._query_dense.kernel.shape[1]),
                                (encoder._feedforward_output_dense.kernel, plan.neurons[i], None)):
            value = np.asarray(kernel).copy()
            # One row group per head: (heads, head_dim, H), or keras-hub DeBERTa-v3's (heads * head_dim, H).
            rows = value.reshape(n or value.shape[0], -1)
            rows[[j for j in range(rows.shape[0]) if j not in kept]] = 0
            kernel.assign(rows.reshape(value.shape))


def test_full_plan_shrink_is_identity(bert4, dev_features):
    same = shrink(bert4, full_plan(bert4))
    np.testing.assert_array_equal(predict_logits(same, dev_features), predict_logits(bert4, dev_features))


def test_shrink_equals_masking_heads_and_neurons(bert4, demo_data, dev_features):
    train, _ = demo_data
    scores = structure_importance(bert4, encode(train.texts, bert4.preprocessor), train.labels, train.task,
                                  batches=2)
    assert [len(s) for s in scores["heads"]] == [4] * 4 and [len(s) for s in scores["neurons"]] == [64] * 4
    plan = plan_by_importance(bert4, scores, head_fraction=0.5, neuron_fraction=0.5, min_neurons=8)
    assert sum(len(h) for h in plan.heads.values()) == 8 and sum(len(n) for n in plan.neurons.values()) == 128
    small = shrink(bert4, plan)
    assert [s["num_heads"] for s in encoder_shapes(small)] == [len(plan.heads[i]) for i in range(4)]
    assert all(s["head_dim"] == 8 for s in encoder_shapes(small))
    assert small.count_params() < bert4.count_params()
    # Reference: the original with the dropped heads' output rows and dropped neurons' rows zeroed.
    zero_pruned_rows(bert4, plan)
    np.testing.assert_allclose(predict_logits(small, dev_features), predict_logits(bert4, dev_features), atol=1e-5)


def test_importance_ranks_a_dead_head_last(bert4, demo_data):
    train, _ = demo_data
    encoder = encoder_layers(bert4)[1]
    w = np.asarray(encoder._self_attention_layer._output_dense.kernel).copy()
    w[2] = 0.0  # head 2 of layer 1 contributes nothing
    encoder._self_attention_layer._output_dense.kernel.assign(w)
    scores = structure_importance(bert4, encode(train.texts, bert4.preprocessor), train.labels, train.task,
                                  batches=2)
    assert scores["heads"][1][2] == 0.0
    plan = plan_by_importance(bert4, scores, head_fraction=1 / 16)
    assert plan.heads[1] == [0, 1, 3]


def test_plans_respect_minimums(bert4):
    scores = {"heads": [np.array([0.0, 0.0, 0.0, 1.0])] + [np.ones(4)] * 3, "neurons": [np.arange(64.0)] * 4}
    plan = plan_by_importance(bert4, scores, head_fraction=0.9, neuron_fraction=0.0, min_heads=1)
    assert all(len(h) >= 1 for h in plan.heads.values())
    assert plan.heads[0] == [3]
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        plan_by_importance(bert4, scores, head_fraction=1.0)


def test_kept_neurons_round_to_a_multiple_keeping_the_best(bert4):
    rng = np.random.default_rng(0)
    scores = {"heads": [np.ones(4)] * 4, "neurons": [rng.random(64) for _ in range(4)]}
    plain = plan_by_importance(bert4, scores, neuron_fraction=0.55, min_neurons=8)
    assert any(len(n) % 2 for n in plain.neurons.values())          # the ranking alone leaves odd widths
    for multiple in (2, 16):
        plan = plan_by_importance(bert4, scores, neuron_fraction=0.55, min_neurons=8, neuron_multiple=multiple)
        for i, kept in plan.neurons.items():
            assert len(kept) % multiple == 0 and abs(len(kept) - len(plain.neurons[i])) <= multiple / 2
            dropped = sorted(set(range(64)) - set(kept))
            assert not dropped or scores["neurons"][i][kept].min() >= scores["neurons"][i][dropped].max()
    assert plan_by_importance(bert4, scores, neuron_fraction=0.99, min_neurons=1,
                              neuron_multiple=16).neurons[0].__len__() == 16   # at least one multiple
    assert len(plan_by_importance(bert4, scores, neuron_fraction=0.99, min_neurons=20,
                                  neuron_multiple=16).neurons[0]) == 32               # never below the minimum
    odd = {"heads": scores["heads"], "neurons": [np.arange(63.0)] * 4}      # an odd width, nothing pruned: 62 kept
    bert_odd = shrink(bert4, StructurePlan(layers=[0, 1, 2, 3], heads={i: [0, 1, 2, 3] for i in range(4)},
                                           neurons={i: list(range(63)) for i in range(4)}))
    assert [len(n) for n in plan_by_importance(bert_odd, odd, neuron_multiple=2).neurons.values()] == [62] * 4
    with pytest.raises(ValueError, match="neuron_multiple must be a positive integer"):
        plan_by_importance(bert4, scores, neuron_multiple=0)


def test_drop_layers_matches_running_the_kept_layers(bert4, dev_features):
    small = shrink(bert4, plan_drop_layers(bert4, [2, 4]))
    assert len(encoder_layers(small)) == 2
    backbone = bert4.backbone
    x = {k: v[:4] for k, v in dev_features.items()}
    h = backbone.get_layer("embeddings_layer_norm")(backbone.get_layer("embeddings_add")((
        backbone.get_layer("token_embedding")(x["token_ids"]),
        backbone.get_layer("position_embedding")(backbone.get_layer("token_embedding")(x["token_ids"])),
        backbone.get_layer("segment_embedding")(x["segment_ids"]))))
    for i in (0, 2):
        h = encoder_layers(bert4)[i](h, padding_mask=x["padding_mask"])
    expected = bert4.output_dense(backbone.get_layer("pooled_dense")(h[:, 0, :]))
    np.testing.assert_allclose(predict_logits(small, x), np.asarray(expected), atol=1e-5)
    assert len(encoder_layers(shrink(bert4, plan_drop_layers(bert4)))) == 2  # every other: keeps 1 and 3


def test_bad_layer_plans():
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    clf = tiny_bert_classifier(demo_vocabulary(), num_layers=2, hidden_dim=16, intermediate_dim=32)
    with pytest.raises(ValueError, match=r"\[3\] are not 1-based layer numbers of this 2-layer encoder"):
        plan_drop_layers(clf, [3])
    with pytest.raises(ValueError, match="would leave no encoder layer"):
        plan_drop_layers(clf, [1, 2])
    plan = full_plan(clf)
    plan.heads[0] = []
    with pytest.raises(ValueError, match="keeps no heads"):
        shrink(clf, plan)


def test_shrunk_model_saves_loads_trains_and_exports(bert4, demo_data, dev_features, tmp_path):
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.verify import verify_litert

    plan = full_plan(bert4)
    plan.heads = {0: [0], 1: [1, 2], 2: [0, 1, 2, 3], 3: [3]}
    plan.neurons = {i: list(range(0, 64, i + 1)) for i in range(4)}
    small = shrink(bert4, plan)
    small.save(tmp_path / "small.keras")
    loaded = load_model(tmp_path / "small.keras")
    np.testing.assert_array_equal(predict_logits(loaded, dev_features), predict_logits(small, dev_features))
    finetune(loaded, demo_data[0], epochs=1, batch_size=32, verbose=0)
    result = export_litert(loaded, tmp_path / "small.tflite", sequence_length=16)
    assert verify_litert(result.path, loaded, demo_data[1]).passed
    # Kernel discovery sees the per-layer shapes, so every other method works on shrunk models too.
    assert [r.shape for r in find_kernels(loaded, roles=["attention_query"])] == [
        (32, 1, 8), (32, 2, 8), (32, 4, 8), (32, 1, 8)]


def test_layerdrop_skips_layers_only_in_training(dev_features):
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    bert4 = tiny_bert_classifier(demo_vocabulary(), num_layers=4, hidden_dim=32, num_heads=4, intermediate_dim=64,
                                 sequence_length=16, seed=3, dropout=0.0)  # so only LayerDrop is random
    assert len({tuple(np.asarray(bert4.backbone(dev_features, training=True)["pooled_output"]).ravel()[:4])
                for _ in range(3)}) == 1
    model = with_layerdrop(bert4, 0.5)
    x = {k: v[:8] for k, v in dev_features.items()}
    np.testing.assert_allclose(predict_logits(model, x), predict_logits(bert4, x), atol=1e-6)
    backbone = model.backbone
    outputs = {tuple(np.asarray(backbone(x, training=True)["pooled_output"]).round(4).ravel()[:4])
               for _ in range(24)}
    # Layers draw independently: far more than the two outcomes "all skipped" / "none skipped" of a shared draw.
    assert len(outputs) > 4
    with pytest.raises(ValueError, match=r"layerdrop must be in \[0, 1\)"):
        with_layerdrop(bert4, 1.0)


def _family_classifier(family, **extra):
    """A tiny random keras-hub classifier of `family` (3 layers, 4 heads of 8, FFN 48) on padded token ids."""
    import keras_hub

    from tfbertopt.models import electra_classifier

    keras.utils.set_random_seed(5)
    common = dict(num_layers=3, num_heads=4, hidden_dim=32, intermediate_dim=48, max_sequence_length=16, **extra)
    if family == "DebertaV3":
        common["bucket_size"] = 4      # relative positions beyond +-2 fall in log buckets at length 10
    if family == "Electra":
        backbone = keras_hub.models.ElectraBackbone(vocab_size=40, embedding_dim=32, **common)
        return electra_classifier(backbone, 3)
    backbone = getattr(keras_hub.models, family + "Backbone")(vocabulary_size=40, **common)
    return getattr(keras_hub.models, family + "TextClassifier")(backbone=backbone, num_classes=3, preprocessor=None)


def _family_inputs(model, n=6, length=10):
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, length + 1, size=n)
    x = {"token_ids": rng.integers(1, 40, size=(n, length)).astype("int32"),
         "padding_mask": (np.arange(length)[None, :] < lengths[:, None]).astype("int32")}
    if "segment_ids" in model.input:
        x["segment_ids"] = np.zeros((n, length), "int32")
    x["token_ids"] *= x["padding_mask"]
    return x


@pytest.mark.parametrize("family", ["Roberta", "DistilBert", "Electra", "DebertaV3"])
def test_other_families_shrink_exactly_save_load_and_export(family, tmp_path):
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.verify import run_litert

    clf = _family_classifier(family)
    x = _family_inputs(clf)
    before = predict_logits(clf, x)
    np.testing.assert_allclose(predict_logits(shrink(clf, full_plan(clf)), x), before, atol=1e-5)
    plan = plan_drop_layers(clf, [2])
    plan.heads = {0: [1, 3], 1: [0, 1, 2, 3], 2: [2]}
    plan.neurons = {0: list(range(0, 48, 2)), 1: list(range(48)), 2: list(range(10))}
    small = shrink(clf, plan)
    expected_task = "BertTextClassifier" if family == "Electra" else f"{family}TextClassifier"
    assert type(small).__name__ == expected_task
    assert [(s["num_heads"], s["intermediate_dim"]) for s in encoder_shapes(small)] == [(2, 24), (1, 10)]
    # Reference: the original with layer 2 skipped and the dropped heads' / neurons' output rows zeroed.
    zero_pruned_rows(clf, plan)
    skip = encoder_layers(clf)[1]
    skip.call = lambda inputs, **kwargs: inputs          # run the original without layer 2
    np.testing.assert_allclose(predict_logits(small, x), predict_logits(clf, x), atol=1e-5)
    small.save(tmp_path / "small.keras")
    loaded = load_model(tmp_path / "small.keras")
    np.testing.assert_array_equal(predict_logits(loaded, x), predict_logits(small, x))
    assert len(find_kernels(loaded, roles="encoder")) == 2 * 6
    path = export_litert(loaded, tmp_path / "small.tflite", sequence_length=10).path
    np.testing.assert_allclose(run_litert(path, x), predict_logits(loaded, x), atol=1e-4)
    # LayerDrop works the same way on these families.
    assert with_layerdrop(clf, 0.2).backbone.layerdrop == 0.2


def test_shrink_refuses_what_it_would_break():
    from tfbertopt.factorization import factorize, share_layers
    from tfbertopt.kernels import UnsupportedModelError
    from tfbertopt.models import tiny_classifier
    from tfbertopt.quantization import quantize_model

    clf = tiny_classifier("roberta")
    with pytest.raises(UnsupportedModelError, match="discard its trained ranges"):
        shrink(quantize_model(clf), full_plan(clf))
    with pytest.raises(UnsupportedModelError, match="layer 0 is factorized"):
        shrink(factorize(clf, rank=4), full_plan(clf))
    with pytest.raises(UnsupportedModelError, match="shares only its attention"):
        shrink(share_layers(clf, "all", parts=["attention"]), full_plan(clf))
