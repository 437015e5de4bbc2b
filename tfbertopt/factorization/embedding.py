"""ALBERT-style factorized token embeddings: a V x E table and an E x H projection, initialised by SVD.

The trained V x H token table T is replaced by `U_E S_E^1/2` (V x E) and `S_E^1/2 V_E^T` (E x H), its best rank-E
approximation with the singular values split evenly between the two factors (which int8 quantizes better than
`U_E S_E` and `V_E^T`: a lower relative int8 error on MiniLM-L6's table at E = 112, with a per-tensor table and
per-channel projection; docs/factorization.md); position and segment embeddings stay H wide (they are small), so
with E = H the model is unchanged. For a 30k vocabulary at H = 384 the table is 11.7M of MiniLM-L6's 22.7M weights;
E = 128 keeps 3.9M.

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.factorization import factorize_embeddings
>>> clf = tiny_bert_classifier(["good", "bad", "fine"], hidden_dim=16)
>>> small = factorize_embeddings(clf, dim=4)
>>> tuple(small.backbone.token_embedding.embeddings.shape), tuple(small.backbone.embedding_projection.kernel.shape)
((8, 4), (4, 16))
"""

from __future__ import annotations

import logging

import numpy as np

from tfbertopt.kernels import UnsupportedModelError
from tfbertopt.surgery import as_compressed, rebuild

logger = logging.getLogger(__name__)


def token_table(model) -> np.ndarray:
    """The effective V x H token embedding of a (possibly already factorized) classifier.

    Raises:
      UnsupportedModelError: an ALBERT/ELECTRA-style E-wide embedding (its projection follows the LayerNorm).
    """
    backbone = as_compressed(model).backbone
    if backbone.embedding_projection is not None and backbone.embedding_projection_kind == "after_norm":
        raise UnsupportedModelError(
            f"this model's embeddings are already {backbone.embedding_dim} wide (ALBERT/ELECTRA layout): tokens, "
            f"positions and segments are added and normalised at that width before the projection to "
            f"{backbone.hidden_dim}, so there is no V x H token table to factorize")
    table = np.asarray(backbone.token_embedding.embeddings, dtype=np.float64)
    if backbone.embedding_projection is not None:
        table = table @ np.asarray(backbone.embedding_projection.kernel, dtype=np.float64)
    return table


def factorize_embeddings(model, dim: int | None = None, max_params: int | None = None):
    """A new classifier whose token embedding is factorized to width `dim` (or the widest E whose table and
    projection hold at most `max_params` weights); kept energy is logged.

    Raises:
      ValueError: neither or both of dim / max_params, E outside 1..H, a budget below E = 1.
    """
    source = as_compressed(model)
    table = token_table(source)
    vocab, hidden = table.shape
    if (dim is None) == (max_params is None):
        raise ValueError("give exactly one of dim= or max_params=")
    if max_params is not None:
        dim = int(max_params) // (vocab + hidden)
        if dim < 1:
            raise ValueError(f"max_params={max_params} cannot hold even E = 1 ({vocab + hidden} weights for a "
                             f"{vocab} x {hidden} table)")
        dim = min(dim, hidden)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= hidden:
        raise ValueError(f"dim must be an integer in 1..{hidden} (the hidden size), got {dim!r}")
    u, s, vt = np.linalg.svd(table, full_matrices=False)
    energy = float((s[:dim] ** 2).sum() / (s ** 2).sum())
    logger.info("token embedding %d x %d -> E = %d keeps %.3f of its energy", vocab, hidden, dim, energy)
    if dim == hidden:
        return rebuild(source, embedding_dim=None, values={"token_embedding/embeddings": table})
    # The singular values are split evenly (U sqrt(S), sqrt(S) V^T): the same product, but neither factor carries
    # all of S's spread, so int8 quantization of either (per tensor or per channel) loses less.
    root = np.sqrt(s[:dim])
    return rebuild(source, embedding_dim=int(dim), values={
        "token_embedding/embeddings": u[:, :dim] * root,
        "embedding_projection/kernel": root[:, None] * vt[:dim],
    })
