"""Knowledge distillation for keras-hub BERT-family classifiers inside `model.fit`.

Hinton's soft targets, Tang et al.'s logit MSE, DistilBERT's cosine and layer-initialised students, Patient-KD's
[CLS] loss and layer maps, TinyBERT's hidden/attention/embedding losses with learned projections, MiniLM's
attention KL; one teacher or several.

>>> from tfbertopt.distillation import (Distiller, DistillationConfig, IntermediateModel, layer_map,
...     narrow_student, student_from_teacher)
"""

from tfbertopt.distillation.config import DistillationConfig
from tfbertopt.distillation.distiller import Distiller, metric_name
from tfbertopt.distillation.internals import AttentionUnavailableError, IntermediateModel, supports_attention
from tfbertopt.distillation.losses import (
    attention_kl,
    attention_mse,
    cls_mse,
    hidden_cosine,
    hidden_mse,
    kl_with_temperature,
    logits_mse,
    soft_cross_entropy,
)
from tfbertopt.distillation.mapping import KINDS as LAYER_MAP_KINDS
from tfbertopt.distillation.mapping import layer_map
from tfbertopt.distillation.students import narrow_student, student_from_teacher

__all__ = [
    "Distiller", "DistillationConfig", "IntermediateModel", "AttentionUnavailableError", "supports_attention",
    "layer_map", "LAYER_MAP_KINDS", "student_from_teacher", "narrow_student", "metric_name",
    "kl_with_temperature", "logits_mse", "soft_cross_entropy", "hidden_mse", "hidden_cosine", "attention_kl",
    "attention_mse", "cls_mse",
]
