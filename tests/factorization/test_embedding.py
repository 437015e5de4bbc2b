"""ALBERT-style embedding factorization: exact at E = H, smaller and exportable below."""

import numpy as np
import pytest

from tfbertopt.factorization import factorize_embeddings
from tfbertopt.factorization.embedding import token_table
from tfbertopt.kernels import count_params, find_kernels
from tfbertopt.train import predict_logits


def test_full_width_is_exact_and_narrow_keeps_the_best_approximation(bert4, features):
    # A table of exact rank 5 factorizes exactly at E = 5.
    table = bert4.backbone.token_embedding.embeddings
    rng = np.random.default_rng(0)
    table.assign((rng.normal(size=(table.shape[0], 5)) @ rng.normal(size=(5, table.shape[1])) * 0.02)
                 .astype("float32"))
    new = factorize_embeddings(bert4, dim=5)
    np.testing.assert_allclose(predict_logits(new, features), predict_logits(bert4, features), atol=2e-4)
    np.testing.assert_allclose(token_table(new), np.asarray(table), atol=1e-5)
    assert count_params(new) == count_params(bert4) - table.shape[0] * 32 + table.shape[0] * 5 + 5 * 32
    roles = {r.role: r.shape for r in find_kernels(new, roles=["token_embedding", "embedding_projection"])}
    assert roles == {"token_embedding": (table.shape[0], 5), "embedding_projection": (5, 32)}
    # The singular values are split evenly: column e of the table and row e of the projection have equal norms
    # (sqrt(s_e) each), so neither factor carries all of their spread into int8.
    column_norms = np.linalg.norm(np.asarray(new.backbone.token_embedding.embeddings), axis=0)
    row_norms = np.linalg.norm(np.asarray(new.backbone.embedding_projection.kernel), axis=1)
    np.testing.assert_allclose(column_norms, row_norms, rtol=1e-4)
    # Refactorizing an already factorized model starts from its effective table.
    again = factorize_embeddings(new, dim=3)
    assert tuple(again.backbone.token_embedding.embeddings.shape) == (table.shape[0], 3)


def test_budget_and_round_trip_and_export(bert4, demo_data, features, tmp_path):
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.verify import verify_litert
    from tfbertopt.saving import load_model

    vocab = bert4.backbone.vocabulary_size
    new = factorize_embeddings(bert4, max_params=(vocab + 32) * 8 + 7)
    assert new.backbone.embedding_dim == 8
    path = str(tmp_path / "e.keras")
    new.save(path)
    np.testing.assert_array_equal(predict_logits(load_model(path), features), predict_logits(new, features))
    result = export_litert(new, str(tmp_path / "e.tflite"), "float32", sequence_length=16)
    assert verify_litert(result.path, new, demo_data[1]).passed


def test_bad_widths_are_named(bert4):
    with pytest.raises(ValueError, match="exactly one of"):
        factorize_embeddings(bert4)
    with pytest.raises(ValueError, match=r"dim must be an integer in 1\.\.32"):
        factorize_embeddings(bert4, dim=64)
    with pytest.raises(ValueError, match="cannot hold even E = 1"):
        factorize_embeddings(bert4, max_params=10)
