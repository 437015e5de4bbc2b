"""Which kernels get pruned: a thin, validated selection over the kernel-discovery module.

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.pruning.policy import PruningPolicy
>>> clf = tiny_bert_classifier(["good", "bad"], num_layers=2)
>>> len(PruningPolicy().select(clf))   # attention q/k/v/o + FFN in/out, 2 layers; head and embeddings excluded
12
>>> len(PruningPolicy(roles=["ffn"], layers=[-1]).select(clf))
2
"""

from __future__ import annotations

from tfbertopt.kernels import find_kernels


class PruningPolicy:
    """Selects kernels by role (default: attention and FFN), encoder layer index and path regex.

    Embeddings are opt-in (`roles=["attention", "ffn", "token_embedding"]`); the classifier head is excluded unless
    named explicitly. `exclude` is a regex of paths to leave dense.
    """

    def __init__(self, roles=("attention", "ffn"), layers=None, pattern: str | None = None,
                 exclude: str | None = None):
        self.roles = [roles] if isinstance(roles, str) else list(roles)
        self.layers = None if layers is None else list(layers)
        self.pattern, self.exclude = pattern, exclude

    def select(self, model) -> list:
        import re

        refs = find_kernels(model, roles=self.roles, layers=self.layers, pattern=self.pattern)
        if self.exclude:
            regex = re.compile(self.exclude)
            refs = [r for r in refs if not regex.search(r.path)]
        seen = set()     # a weight shared across layers (attention/FFN sharing) gets one mask
        refs = [r for r in refs if not (id(r.variable) in seen or seen.add(id(r.variable)))]
        if not refs:
            raise ValueError(f"pruning policy {self!r} matches no kernel of {type(model).__name__}; see "
                             f"`tfbertopt kernels MODEL` for the kernels and their roles")
        return refs

    def get_config(self) -> dict:
        return {"roles": self.roles, "layers": self.layers, "pattern": self.pattern, "exclude": self.exclude}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if v is not None)
        return f"PruningPolicy({args})"
