"""Low-rank factorization of attention and FFN kernels by truncated SVD.

`plan_factorization(model, rank=|energy=|param_fraction=)` computes every targeted kernel's SVD and chooses its
rank: one fixed rank, the smallest rank keeping an energy fraction, or a global budget (`param_fraction` of the
targeted kernels' weights, spent where it keeps the most relative energy). `factorize(model, plan)` returns a new
classifier whose chosen projections are `LowRankEinsumDense` pairs initialised with `U sqrt(S)` and
`sqrt(S) V^T` (the best rank-r approximation in Frobenius norm); the source model is left untouched. The result is
an ordinary Keras model: it fine-tunes (recovery), saves, loads, prunes, distils and exports (two
FULLY_CONNECTED ops per factorized kernel).

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.factorization import factorize, plan_factorization
>>> clf = tiny_bert_classifier(["good", "bad"], num_layers=2, hidden_dim=16, intermediate_dim=64)
>>> plan = plan_factorization(clf, rank=4, roles=["ffn"])
>>> plan.ranks[(0, "ffn_intermediate")]
4
>>> small = factorize(clf, plan)
>>> type(small.backbone.transformer_layers[0]._feedforward_intermediate_dense).__name__
'LowRankEinsumDense'
>>> plan_factorization(clf, rank=40, roles=["ffn"])
Traceback (most recent call last):
...
ValueError: layer 0 ffn_intermediate: rank 40 is larger than the 16 x 64 kernel allows (at most 16)
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from tfbertopt.factorization import rank as rank_lib
from tfbertopt.surgery import as_compressed, rebuild
from tfbertopt.kernels import ENCODER_DENSE_ROLES, expand_roles, find_kernels, get_backbone, kernel_shape

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FactorizationPlan:
    """Chosen ranks per (encoder layer, role) (None = stays dense) and the SVD of each targeted kernel."""

    ranks: dict
    shapes: dict                       # (layer, role) -> 2-D (inputs, outputs) shape
    svd: dict = dataclasses.field(repr=False, default_factory=dict)   # (layer, role) -> (u, s, vt)

    def params(self) -> tuple[int, int]:
        """(weights of the targeted kernels after factorization, before)."""
        after = before = 0
        for key, (m, n) in self.shapes.items():
            before += m * n
            r = self.ranks[key]
            after += m * n if r is None else r * (m + n)
        return after, before

    def kept_energy(self, key) -> float:
        s2 = self.svd[key][1] ** 2
        r = self.ranks[key]
        return 1.0 if r is None or s2.sum() == 0 else float(s2[:r].sum() / s2.sum())

    def summary(self) -> str:
        after, before = self.params()
        ranks = [r for r in self.ranks.values() if r is not None]
        text = (f"{len(ranks)}/{len(self.ranks)} kernels factorized, {after / max(before, 1):.1%} of their "
                f"{before:,} weights kept")
        if ranks:
            energy = np.mean([self.kept_energy(k) for k, r in self.ranks.items() if r is not None])
            text += f"; ranks {min(ranks)}..{max(ranks)}, mean kept energy {energy:.3f}"
        return text


def kernel_matrix(ref) -> np.ndarray:
    """A kernel as its (contracted inputs, free outputs) matrix: (H, heads*dh) for Q/K/V, (heads*dh, H) for the
    attention output, (H, I) / (I, H) for the FFN."""
    w = np.asarray(ref.variable, dtype=np.float64)
    if ref.role == "attention_output":
        return w.reshape(-1, w.shape[-1])
    return w.reshape(w.shape[0], -1)


def plan_factorization(model, rank: int | None = None, energy: float | None = None,
                       param_fraction: float | None = None, roles=("encoder",), layers=None) -> FactorizationPlan:
    """SVD of the targeted kernels (encoder dense roles only) and their ranks; exactly one of `rank`, `energy`
    (kept fraction of squared singular values, per kernel) and `param_fraction` (global budget: the factorized
    kernels hold at most this fraction of the targeted kernels' weights).

    Raises:
      ValueError: not exactly one rule, an embedding/head role (see `factorize_embeddings`), an already
        factorized kernel, a rank larger than a kernel allows, a fraction outside (0, 1).
      BudgetError: a budget below rank 1 everywhere.
    """
    rules = [x is not None for x in (rank, energy, param_fraction)]
    if sum(rules) != 1:
        raise ValueError("give exactly one of rank=, energy= or param_fraction=")
    wanted = expand_roles(roles)
    bad = sorted(wanted - set(ENCODER_DENSE_ROLES))
    if bad:
        raise ValueError(f"low-rank factorization applies to attention and FFN kernels; {bad} cannot be factorized "
                         f"here (embeddings: tfbertopt.factorization.factorize_embeddings)")
    refs = find_kernels(model, roles=wanted, layers=layers)
    if not refs:
        raise ValueError("no kernels matched roles/layers")
    specs = getattr(get_backbone(model), "layer_specs", None) or []
    if any(spec.get("attention_shared_with") is not None or spec.get("ffn_shared_with") is not None
           for spec in specs):
        raise ValueError("this model shares attention or FFN blocks across layers; factorize before sharing them "
                         "(whole-layer sharing can be factorized)")
    factorized = sorted({f"layer {r.layer_index} {r.role}" for r in refs if r.part is not None})
    if factorized:
        raise ValueError(f"{factorized} are already factorized; plan from the dense model")
    shapes, svd = {}, {}
    for ref in refs:
        key = (ref.layer_index, ref.role)
        matrix = kernel_matrix(ref)
        shapes[key] = matrix.shape
        svd[key] = np.linalg.svd(matrix, full_matrices=False)
    if rank is not None:
        ranks = {key: rank_lib.check_rank(rank, shapes[key], f"layer {key[0]} {key[1]}") for key in shapes}
    elif energy is not None:
        ranks = {key: rank_lib.rank_for_energy(svd[key][1], energy) for key in shapes}
    else:
        if not 0.0 < param_fraction < 1.0:
            raise ValueError(f"param_fraction must be in (0, 1), got {param_fraction!r}")
        total = sum(m * n for m, n in shapes.values())
        ranks = rank_lib.ranks_for_budget({key: (svd[key][1], shapes[key]) for key in shapes},
                                          int(param_fraction * total))
    return FactorizationPlan(ranks=ranks, shapes=shapes, svd=svd)


def factorize(model, plan: FactorizationPlan | None = None, **plan_options):
    """A new classifier with the kernels of `plan` (or of `plan_factorization(model, **plan_options)`) replaced
    by their truncated-SVD factor pairs; every other weight copied."""
    plan = plan if plan is not None else plan_factorization(model, **plan_options)
    source = as_compressed(model)
    specs = [dict(spec) for spec in source.backbone.layer_specs]
    values = {}
    refs = {(r.layer_index, r.role): r for r in find_kernels(source, roles=ENCODER_DENSE_ROLES)}
    # Kernel refs index unique encoder objects; with cross-layer sharing, one object serves several specs.
    owners = [i for i, spec in enumerate(specs) if spec.get("shared_with") is None]
    for key, r in plan.ranks.items():
        if r is None:
            continue
        layer, role = key
        for i, spec in enumerate(specs):
            if i == owners[layer] or spec.get("shared_with") == owners[layer]:
                spec["ranks"] = {**(spec.get("ranks") or {}), role: int(r)}
        ref = refs[key]
        u, s, vt = plan.svd[key]
        root = np.sqrt(s[:r])
        shape = kernel_shape(ref.layer)
        split = 2 if role == "attention_output" else 1      # kernel axes that are contracted inputs
        base = ref.variable.path.rsplit("/", 1)[0]
        values[f"{base}/factor_in"] = (u[:, :r] * root).reshape(shape[:split] + (r,))
        values[f"{base}/factor_out"] = (root[:, None] * vt[:r]).reshape((r,) + shape[split:])
        values[f"{base}/bias"] = np.asarray(ref.layer.bias)
    new = rebuild(source, values=values, layer_specs=specs)
    logger.info("factorized: %s", plan.summary())
    return new
