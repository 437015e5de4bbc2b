"""What to distil and how much each term weighs: a validated, serializable `DistillationConfig`.

The total loss is

    hard_label_weight * CE(y, student) + logits_weight * L_logits(T) + hidden_weight * L_hidden
    + attention_weight * L_attention + embedding_weight * L_embedding + cls_weight * L_cls

A term is active when its weight is > 0 (and, for logits / hidden / attention, its loss name is not None).
Hidden, attention and [CLS] terms use `layer_map` and average over the mapped layers; the embedding term compares
the embedding outputs (inputs of the first encoder layer) with the `hidden` loss ("mse" when `hidden` is None).

Recipes: Hinton (`logits="kl"`), Tang et al. (`logits="mse"`), DistilBERT (kl + hidden="cosine"), Patient-KD
(kl + `cls_weight`, `layer_map="skip"` or "last"), TinyBERT (hidden mse + attention mse + embedding, "uniform"),
MiniLM-style (attention="kl" on the last layer: `layer_map={n_s - 1: n_t - 1}`).

Example:

>>> from tfbertopt.distillation.config import DistillationConfig
>>> config = DistillationConfig(logits="kl", temperature=4.0, hidden="mse", hidden_weight=0.1)
>>> config.active_terms()
['hard', 'logits', 'hidden']
>>> DistillationConfig.from_config(config.get_config()) == config
True
>>> DistillationConfig(hidden="cosin", hidden_weight=1.0)
Traceback (most recent call last):
...
ValueError: unknown hidden loss 'cosin'; choose one of ['mse', 'cosine'] or None; did you mean 'cosine'?
"""

from __future__ import annotations

import dataclasses
import difflib

from tfbertopt.distillation import mapping
from tfbertopt.distillation.losses import ATTENTION_LOSSES, HIDDEN_LOSSES, LOGITS_LOSSES

_WEIGHTS = ("hard_label_weight", "logits_weight", "hidden_weight", "attention_weight", "embedding_weight",
            "cls_weight")


@dataclasses.dataclass
class DistillationConfig:
    """Loss names, weights, temperature and layer map of a distillation run (see the module docstring)."""

    hard_label_weight: float = 0.5
    logits: str | None = "kl"
    logits_weight: float = 0.5
    temperature: float = 2.0
    hidden: str | None = None
    hidden_weight: float = 0.0
    attention: str | None = None
    attention_weight: float = 0.0
    embedding_weight: float = 0.0
    cls_weight: float = 0.0
    layer_map: str | dict = "uniform"

    def __post_init__(self):
        for name in _WEIGHTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            setattr(self, name, float(value))
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not self.temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {self.temperature!r}")
        self.temperature = float(self.temperature)
        _check_name("logits", self.logits, LOGITS_LOSSES)
        _check_name("hidden", self.hidden, HIDDEN_LOSSES)
        _check_name("attention", self.attention, ATTENTION_LOSSES)
        mapping.check_kind(self.layer_map)
        if isinstance(self.layer_map, dict):
            self.layer_map = mapping.normalize(self.layer_map)
        if not self.active_terms():
            raise ValueError("every loss weight is zero (or its loss is None): nothing to train on; set e.g. "
                             "logits_weight > 0 or hard_label_weight > 0")

    def active_terms(self) -> list[str]:
        """Names of the loss terms that contribute: hard, logits, hidden, attention, embedding, cls."""
        terms = []
        if self.hard_label_weight > 0:
            terms.append("hard")
        if self.logits is not None and self.logits_weight > 0:
            terms.append("logits")
        if self.hidden is not None and self.hidden_weight > 0:
            terms.append("hidden")
        if self.attention is not None and self.attention_weight > 0:
            terms.append("attention")
        if self.embedding_weight > 0:
            terms.append("embedding")
        if self.cls_weight > 0:
            terms.append("cls")
        return terms

    def weight(self, term: str) -> float:
        return getattr(self, "hard_label_weight" if term == "hard" else f"{term}_weight")

    def uses_layers(self) -> bool:
        return any(t in self.active_terms() for t in ("hidden", "attention", "cls"))

    def get_config(self) -> dict:
        config = dataclasses.asdict(self)
        if isinstance(self.layer_map, dict):
            config["layer_map"] = {str(k): v for k, v in self.layer_map.items()}   # JSON-safe keys
        return config

    @classmethod
    def from_config(cls, config: dict) -> "DistillationConfig":
        unknown = sorted(set(config) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown DistillationConfig fields {unknown}")
        return cls(**config)


def _check_name(field: str, value, known: dict) -> None:
    if value is None or value in known:
        return
    close = difflib.get_close_matches(str(value), list(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"unknown {field} loss {value!r}; choose one of {list(known)} or None{hint}")

