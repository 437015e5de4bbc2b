"""Students that share the teacher's tokenizer: fewer layers initialised from the teacher, or a narrower fresh model.

- `student_from_teacher(teacher, layers)`: DistilBERT's initialisation. Keeps the chosen encoder layers of a BERT
  teacher of any family (embeddings, pooler and head copied too) through structured pruning's `plan_drop_layers`
  + `shrink`, so the student is a classifier of the teacher's own class (over a `CompressedBackbone`) that saves,
  loads and exports.
- `narrow_student(teacher, ...)`: a randomly initialised classifier of the teacher's family, vocabulary, sequence
  length and number of classes, with any width and depth (TinyBERT-style students; needs a projection for hidden
  state losses, which `Distiller` adds).

Both reuse the teacher's preprocessor object, so the same token ids mean the same words.

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.kernels import encoder_shapes
>>> from tfbertopt.distillation.students import narrow_student, student_from_teacher
>>> teacher = tiny_bert_classifier(["good", "bad"], num_layers=4, hidden_dim=16, intermediate_dim=32)
>>> len(encoder_shapes(student_from_teacher(teacher, "every_other")))   # keeps teacher layers 0 and 2
2
>>> small = narrow_student(teacher, hidden_dim=8, num_layers=1, num_heads=2, intermediate_dim=16)
>>> encoder_shapes(small)
[{'hidden_dim': 8, 'num_heads': 2, 'head_dim': 4, 'intermediate_dim': 16}]
"""

from __future__ import annotations

import keras

from tfbertopt.factorization import unshare_layers
from tfbertopt.kernels import UnsupportedModelError, encoder_call_counts, encoder_layers, find_kernels, get_backbone
from tfbertopt.layers import PrunedBertBackbone
from tfbertopt.pruning.structured import plan_drop_layers, shrink



def student_from_teacher(teacher, layers="every_other"):
    """A shallower copy of a classifier of any family `tfbertopt.surgery` reads, keeping encoder layers `layers`
    (0-based depths, kept in the teacher's order) or "every_other" (layers 0, 2, 4, ...), with the teacher's
    embeddings, pooler, head and preprocessor (DistilBERT's own initialisation, Sanh et al. 2019). A teacher that
    shares layers (ALBERT) is unshared first, so each kept depth becomes a layer of its own.

    Raises:
      ValueError: an empty selection, or an index outside the teacher's depth.
      UnsupportedModelError: a model `tfbertopt.surgery` cannot rebuild (not a classifier of its families).
    """
    if any(count > 1 for count in encoder_call_counts(teacher)):
        teacher = unshare_layers(teacher)
    n = len(encoder_layers(teacher))
    if isinstance(layers, str):
        if layers != "every_other":
            raise ValueError(f"layers must be a list of 0-based layer indices or 'every_other', got {layers!r}")
        return shrink(teacher, plan_drop_layers(teacher, "every_other"))
    keep = list(layers)
    if not keep:
        raise ValueError("keep at least one encoder layer")
    bad = [i for i in keep if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n]
    if bad:
        raise ValueError(f"layers {bad} are not 0-based indices of the teacher's {n} encoder layers (0..{n - 1})")
    drop = [i + 1 for i in range(n) if i not in set(keep)]   # plan_drop_layers takes 1-based numbers
    return shrink(teacher, plan_drop_layers(teacher, drop))


def narrow_student(teacher, hidden_dim: int, num_layers: int, num_heads: int, intermediate_dim: int,
                   dropout: float = 0.1, seed: int = 0):
    """A randomly initialised classifier of the teacher's family (BERT/ELECTRA -> BERT, DistilBERT, RoBERTa,
    DeBERTa-v3) over the same tokenizer and preprocessor, with the given shape and the teacher's number of classes.

    Raises:
      ValueError: `hidden_dim` not divisible by `num_heads`, or a non-positive size.
      UnsupportedModelError: a family without a recipe here (ALBERT) or not a classifier.
    """
    import keras_hub


    for name, value in (("hidden_dim", hidden_dim), ("num_layers", num_layers), ("num_heads", num_heads),
                        ("intermediate_dim", intermediate_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if hidden_dim % num_heads:
        raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
    backbone = get_backbone(teacher)
    if backbone is teacher or not hasattr(teacher, "num_classes"):
        raise UnsupportedModelError(f"narrow_student needs a classifier teacher, got {type(teacher).__name__}")
    vocabulary_size = find_kernels(teacher, roles=["token_embedding"])[0].shape[0]
    positions = find_kernels(teacher, roles=["position_embedding"])     # DeBERTa-v3: relative positions only
    max_length = positions[0].shape[0] if positions else backbone.max_sequence_length
    shape = dict(vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim,
                 intermediate_dim=intermediate_dim, dropout=dropout, max_sequence_length=max_length)
    head = dict(num_classes=teacher.num_classes, preprocessor=teacher.preprocessor,
                activation=getattr(teacher, "activation", None), dropout=dropout)
    keras.utils.set_random_seed(seed)
    bert_like = (keras_hub.models.BertBackbone, keras_hub.models.ElectraBackbone, PrunedBertBackbone)
    if isinstance(backbone, bert_like):
        student_backbone = keras_hub.models.BertBackbone(num_segments=getattr(backbone, "num_segments", 2), **shape)
        return keras_hub.models.BertTextClassifier(backbone=student_backbone, **head)
    if isinstance(backbone, keras_hub.models.DistilBertBackbone):
        return keras_hub.models.DistilBertTextClassifier(
            backbone=keras_hub.models.DistilBertBackbone(**shape), hidden_dim=hidden_dim, **head)
    if isinstance(backbone, keras_hub.models.RobertaBackbone):
        return keras_hub.models.RobertaTextClassifier(
            backbone=keras_hub.models.RobertaBackbone(**shape), hidden_dim=hidden_dim, **head)
    if isinstance(backbone, keras_hub.models.DebertaV3Backbone) or getattr(backbone, "attention", None) == \
            "disentangled":
        return keras_hub.models.DebertaV3TextClassifier(
            backbone=keras_hub.models.DebertaV3Backbone(bucket_size=backbone.bucket_size, **shape),
            hidden_dim=hidden_dim, **head)
    raise UnsupportedModelError(f"narrow_student has no recipe for {type(backbone).__name__} teachers; it builds "
                                f"BERT, DistilBERT, RoBERTa and DeBERTa-v3 students")
