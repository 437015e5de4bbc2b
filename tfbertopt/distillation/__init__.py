"""Knowledge distillation for keras-hub BERT-family classifiers inside `model.fit`.

Hinton's soft targets, Tang et al.'s logit MSE, DistilBERT's cosine and layer-initialised students, Patient-KD's
[CLS] loss and layer maps, TinyBERT's hidden/attention/embedding losses with learned projections, MiniLM's
attention KL; one teacher or several. Students: layer-initialised or narrow BERTs (`students`), Tang et al.'s BiLSTM
and a Kim CNN over the teacher's word embeddings (`word_students`). Teacher outputs can be cached on disk
(`cache`) so that later epochs cost a student step only.

>>> from tfbertopt.distillation import (Distiller, DistillationConfig, IntermediateModel, layer_map,
...     narrow_student, student_from_teacher, bilstm_student, cnn_student, TeacherCache, cache_teacher_outputs)
"""

from tfbertopt.distillation.cache import (CacheMismatchError, CacheTooLargeError, TeacherCache,
                                          cache_teacher_outputs, estimate_cache_bytes)
from tfbertopt.distillation.config import DistillationConfig
from tfbertopt.distillation.distiller import Distiller, metric_name
from tfbertopt.distillation.internals import (AttentionUnavailableError, IntermediateModel, LogitsOnlyModel,
                                              supports_attention)
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
from tfbertopt.distillation.word_students import CnnStudent, LstmStudent, bilstm_student, cnn_student, student_macs

__all__ = [
    "Distiller", "DistillationConfig", "IntermediateModel", "AttentionUnavailableError", "supports_attention",
    "layer_map", "LAYER_MAP_KINDS", "student_from_teacher", "narrow_student", "metric_name",
    "kl_with_temperature", "logits_mse", "soft_cross_entropy", "hidden_mse", "hidden_cosine", "attention_kl",
    "attention_mse", "cls_mse", "LogitsOnlyModel", "bilstm_student", "cnn_student", "LstmStudent", "CnnStudent",
    "student_macs", "TeacherCache", "cache_teacher_outputs", "estimate_cache_bytes", "CacheTooLargeError",
    "CacheMismatchError",
]
