"""Cross-layer sharing: one set of weights per group, in the model, in the file and in LiteRT."""

import numpy as np
import pytest

from tfbertopt.factorization import share_layers
from tfbertopt.factorization.sharing import sharing_groups
from tfbertopt.kernels import count_macs, count_params, encoder_layers
from tfbertopt.train import finetune, predict_logits


def test_identical_layers_share_exactly(bert4, features):
    encoders = encoder_layers(bert4)
    for i in (1, 2, 3):                     # make every layer a copy of layer 0: sharing must change nothing
        encoders[i].set_weights(encoders[0].get_weights())
    for init in ("first", "average"):
        shared = share_layers(bert4, "all", init=init)
        np.testing.assert_allclose(predict_logits(shared, features), predict_logits(bert4, features), atol=1e-5)
    assert len(encoder_layers(shared)) == 1 and shared.backbone.encoder_call_order == [0, 0, 0, 0]
    per_layer = sum(int(np.prod(w.shape)) for w in encoders[0].weights)
    assert count_params(shared) == count_params(bert4) - 3 * per_layer
    assert count_macs(shared) == count_macs(bert4)          # every layer still runs


def test_average_init_and_training_keep_weights_tied(bert4, demo_data, features, tmp_path):
    from tfbertopt.saving import load_model

    encoders = encoder_layers(bert4)
    shared = share_layers(bert4, [[0, 2], [1, 3]])
    leader = encoder_layers(shared)[0]
    np.testing.assert_allclose(np.asarray(leader.weights[0]),
                               (np.asarray(encoders[0].weights[0]) + np.asarray(encoders[2].weights[0])) / 2,
                               atol=1e-6)
    assert shared.backbone.encoder_call_order == [0, 1, 0, 1]
    finetune(shared, demo_data[0], epochs=1, batch_size=16, max_steps=3, learning_rate=1e-3, verbose=0)
    path = str(tmp_path / "s.keras")
    shared.save(path)
    loaded = load_model(path)
    assert loaded.backbone.encoder_call_order == [0, 1, 0, 1] and len(encoder_layers(loaded)) == 2
    np.testing.assert_array_equal(predict_logits(loaded, features), predict_logits(shared, features))


def test_litert_stores_shared_weights_once(bert4, demo_data, tmp_path):
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.verify import verify_litert

    shared = share_layers(bert4, "all")
    dense = export_litert(bert4, str(tmp_path / "d.tflite"), "float32", sequence_length=16)
    small = export_litert(shared, str(tmp_path / "s.tflite"), "float32", sequence_length=16)
    saved = (count_params(bert4) - count_params(shared)) * 4
    assert dense.size_bytes - small.size_bytes > 0.9 * saved
    assert verify_litert(small.path, shared, demo_data[1]).passed


def test_bad_groups_are_named(bert4):
    from tfbertopt.pruning.structured import shrink, full_plan

    assert sharing_groups("pairs", 5) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="more than one group"):
        share_layers(bert4, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="not 0-based indices"):
        share_layers(bert4, [[0, 4]])
    with pytest.raises(ValueError, match="init must be one of"):
        share_layers(bert4, "all", init="mean")
    plan = full_plan(bert4)
    plan.neurons[1] = plan.neurons[1][:32]
    narrow = shrink(bert4, plan)
    with pytest.raises(ValueError, match=r"layers \[0, 1\] cannot share weights: their shapes differ"):
        share_layers(narrow, [[0, 1]])
    with pytest.raises(ValueError, match="already shares"):
        share_layers(share_layers(bert4, "pairs"), "all")


def test_shared_layers_factorize_once(bert4, features):
    from tfbertopt.factorization import factorize, plan_factorization

    shared = share_layers(bert4, "pairs")
    plan = plan_factorization(shared, param_fraction=0.5)
    assert {layer for layer, _ in plan.ranks} == {0, 1}          # two unique encoder objects
    small = factorize(shared, plan)
    assert small.backbone.encoder_call_order == [0, 0, 1, 1] and len(encoder_layers(small)) == 2
    full = factorize(shared, rank=32)
    np.testing.assert_allclose(predict_logits(full, features), predict_logits(shared, features), atol=2e-4)


@pytest.mark.parametrize("part", ["attention", "ffn"])
def test_sharing_one_block_keeps_the_rest_per_layer(bert4, demo_data, features, tmp_path, part):
    from tfbertopt.export.litert import export_litert
    from tfbertopt.kernels import find_kernels
    from tfbertopt.pruning import ConstantSparsity, UpdatePruningStep, get_pruning, prune_low_magnitude
    from tfbertopt.saving import load_model

    from tfbertopt.export.litert import export_litert as export

    # The unshared reference file is written before the layers are made identical: LiteRT stores identical
    # constant buffers once, which would hide what sharing saves.
    dense = export(bert4, str(tmp_path / "d.tflite"), "float32", sequence_length=16) if part == "ffn" else None
    encoders = encoder_layers(bert4)
    for i in (1, 2, 3):        # identical blocks: sharing them must change nothing
        block = (lambda e: e._self_attention_layer) if part == "attention" else \
            (lambda e: e._feedforward_intermediate_dense)
        block(encoders[i]).set_weights(block(encoders[0]).get_weights())
        if part == "ffn":
            encoders[i]._feedforward_output_dense.set_weights(encoders[0]._feedforward_output_dense.get_weights())
    shared = share_layers(bert4, "all", parts=[part])
    np.testing.assert_allclose(predict_logits(shared, features), predict_logits(bert4, features), atol=1e-5)
    layers = encoder_layers(shared)
    assert len(layers) == 4 and shared.backbone.encoder_call_order == [0, 1, 2, 3]
    same = (lambda e: e._self_attention_layer) if part == "attention" else (lambda e: e._feedforward_output_dense)
    assert all(same(e) is same(layers[0]) for e in layers)
    assert layers[1]._self_attention_layer_norm is not layers[0]._self_attention_layer_norm
    assert count_params(shared) < count_params(bert4) and count_macs(shared) == count_macs(bert4)

    path = str(tmp_path / "p.keras")
    shared.save(path)
    loaded = load_model(path)
    assert same(encoder_layers(loaded)[3]) is same(encoder_layers(loaded)[0])
    np.testing.assert_array_equal(predict_logits(loaded, features), predict_logits(shared, features))
    if part == "attention":     # the file-size and pruning checks below run once (ffn) to keep the suite short
        return
    small = export_litert(shared, str(tmp_path / "s.tflite"), "float32", sequence_length=16)
    assert dense.size_bytes - small.size_bytes > 0.9 * (count_params(bert4) - count_params(shared)) * 4

    # One mask per shared weight, exact sparsity after training.
    prune_low_magnitude(shared, ConstantSparsity(0.5, 0, frequency=1), policy=None)
    finetune(shared, demo_data[0], epochs=1, batch_size=16, max_steps=2, callbacks=[UpdatePruningStep()], verbose=0)
    refs = find_kernels(shared, roles=[part])
    assert len({id(r.variable) for r in refs}) < len(refs)
    assert get_pruning(shared).overall_sparsity() == pytest.approx(0.5, abs=0.01)


def test_block_sharing_errors(bert4):
    from tfbertopt.factorization import factorize

    with pytest.raises(ValueError, match="parts must be"):
        share_layers(bert4, "all", parts=["embeddings"])
    with pytest.raises(ValueError, match="factorize before sharing them"):
        factorize(share_layers(bert4, "pairs", parts=["ffn"]), rank=4)
