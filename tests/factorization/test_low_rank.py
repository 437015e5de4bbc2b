"""SVD factorization: exact at full rank, smaller at low rank, and an ordinary model afterwards."""

import numpy as np
import pytest

from tfbertopt.factorization import BudgetError, factorize, plan_factorization
from tfbertopt.kernels import count_macs, count_params, encoder_shapes, find_kernels
from tfbertopt.train import finetune, predict_logits


def test_full_rank_factorization_reproduces_the_model(bert4, features):
    plan = plan_factorization(bert4, rank=32)          # min(32, ...) for every encoder kernel: exact
    new = factorize(bert4, plan)
    np.testing.assert_allclose(predict_logits(new, features), predict_logits(bert4, features), atol=2e-4)
    assert encoder_shapes(new) == encoder_shapes(bert4)
    factors = find_kernels(new, roles=["attention_query"], layers=[0])
    assert [r.part for r in factors] == ["factor_in", "factor_out"]
    assert [r.shape for r in factors] == [(32, 32), (32, 4, 8)]
    # The source model is untouched.
    assert all(r.part is None for r in find_kernels(bert4, roles=["encoder"]))


def test_budget_factorization_holds_its_fraction_and_cuts_macs(bert4, features):
    plan = plan_factorization(bert4, param_fraction=0.5, roles=["encoder"])
    after, before = plan.params()
    assert after <= 0.5 * before + sum(m + n for m, n in plan.shapes.values())
    new = factorize(bert4, plan)
    kernels = sum(r.size for r in find_kernels(new, roles=["encoder"]))
    assert kernels == after
    assert count_params(new) < count_params(bert4)
    assert count_macs(new) < count_macs(bert4)
    # Truncation keeps most of the function (random init: singular values are flat, so this is loose).
    ref, out = predict_logits(bert4, features), predict_logits(new, features)
    assert np.corrcoef(ref.ravel(), out.ravel())[0, 1] > 0.5


def test_energy_and_layer_selection(bert4):
    plan = plan_factorization(bert4, energy=0.99, roles=["ffn"], layers=[0, -1])
    assert sorted(plan.ranks) == [(0, "ffn_intermediate"), (0, "ffn_output"), (3, "ffn_intermediate"),
                                  (3, "ffn_output")]
    assert all(plan.kept_energy(k) >= 0.99 for k, r in plan.ranks.items() if r is not None)
    assert "kernels factorized" in plan.summary()


def test_factorized_model_trains_saves_loads_and_exports(bert4, demo_data, features, tmp_path):
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.verify import verify_litert
    from tfbertopt.saving import load_model

    new = factorize(bert4, rank=6, roles=["attention", "ffn"])
    before = [np.array(r.variable) for r in find_kernels(new, roles=["ffn_intermediate"])]
    finetune(new, demo_data[0], epochs=1, batch_size=16, max_steps=4, learning_rate=1e-3, verbose=0)
    after = [np.array(r.variable) for r in find_kernels(new, roles=["ffn_intermediate"])]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))     # both factors train
    path = str(tmp_path / "f.keras")
    new.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(predict_logits(loaded, features), predict_logits(new, features))

    result = export_litert(new, str(tmp_path / "f.tflite"), "float32", sequence_length=16)
    assert not any("EINSUM" in op or "FLEX" in op.upper() for op in result.ops)
    dense = export_litert(bert4, str(tmp_path / "d.tflite"), "float32", sequence_length=16)
    # Every factorized kernel is a pair of matrix products.
    assert result.ops["FULLY_CONNECTED"] + result.ops.get("BATCH_MATMUL", 0) > \
        dense.ops["FULLY_CONNECTED"] + dense.ops.get("BATCH_MATMUL", 0)
    report = verify_litert(result.path, new, demo_data[1])
    assert report.passed, report.summary()


def test_factorized_model_can_be_pruned(bert4, demo_data):
    from tfbertopt.pruning import ConstantSparsity, UpdatePruningStep, get_pruning, prune_low_magnitude

    new = factorize(bert4, rank=8, roles=["ffn"])
    prune_low_magnitude(new, ConstantSparsity(0.5, 0, frequency=1))
    finetune(new, demo_data[0], epochs=1, batch_size=16, max_steps=3, callbacks=[UpdatePruningStep()], verbose=0)
    factors = [r for r in find_kernels(new, roles=["ffn"]) if r.part]
    assert factors and all(abs(float(np.mean(np.asarray(r.variable) == 0)) - 0.5) < 0.02 for r in factors)
    assert get_pruning(new).overall_sparsity() == pytest.approx(0.5, abs=0.02)


def test_bad_requests_are_named(bert4):
    with pytest.raises(ValueError, match="exactly one of"):
        plan_factorization(bert4, rank=4, energy=0.9)
    with pytest.raises(ValueError, match=r"rank 40 is larger than the 32 x 32 kernel allows"):
        plan_factorization(bert4, rank=40, roles=["attention_query"])
    with pytest.raises(ValueError, match="factorize_embeddings"):
        plan_factorization(bert4, rank=4, roles=["token_embedding"])
    with pytest.raises(BudgetError, match="cannot be met"):
        plan_factorization(bert4, param_fraction=0.01)
    with pytest.raises(ValueError, match="already factorized"):
        plan_factorization(factorize(bert4, rank=4, roles=["ffn"]), rank=2, roles=["ffn"])
    from tfbertopt.kernels import UnsupportedModelError
    from tfbertopt.pruning.structured import full_plan, shrink

    with pytest.raises(UnsupportedModelError, match="prune and shrink first"):
        shrink(factorize(bert4, rank=4, roles=["ffn"]), full_plan(bert4))
