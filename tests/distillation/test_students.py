"""Students over the teacher's tokenizer: layer-initialised (DistilBERT) and narrow random ones."""

import keras_hub
import numpy as np
import pytest

from tfbertopt.data.pipeline import encode
from tfbertopt.distillation import IntermediateModel, narrow_student, student_from_teacher
from tfbertopt.kernels import UnsupportedModelError, encoder_layers, encoder_shapes


@pytest.fixture()
def teacher():
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    return tiny_bert_classifier(demo_vocabulary(), num_layers=4, hidden_dim=16, num_heads=2, intermediate_dim=32,
                                sequence_length=16, seed=2)


def test_student_copies_the_chosen_layers(teacher):
    student = student_from_teacher(teacher, [0, 3])
    t_layers, s_layers = encoder_layers(teacher), encoder_layers(student)
    assert len(s_layers) == 2 and student.preprocessor is teacher.preprocessor
    for s, t in zip(s_layers, (t_layers[0], t_layers[3])):
        for a, b in zip(s.get_weights(), t.get_weights()):
            np.testing.assert_array_equal(a, b)
    for name in ("token_embedding", "pooled_dense"):
        for a, b in zip(student.backbone.get_layer(name).get_weights(), teacher.backbone.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(student.output_dense.get_weights()[0], teacher.output_dense.get_weights()[0])
    assert IntermediateModel(student).num_layers == 2     # a PrunedBertBackbone student gives its internals too


def test_keeping_every_layer_gives_the_teacher(teacher, demo_data):
    x = encode(demo_data[1].texts[:4], teacher.preprocessor)
    same = student_from_teacher(teacher, [0, 1, 2, 3])
    np.testing.assert_allclose(same.backbone(x)["sequence_output"], teacher.backbone(x)["sequence_output"],
                               atol=1e-5)
    assert len(encoder_layers(student_from_teacher(teacher, "every_other"))) == 2


@pytest.mark.parametrize("layers", [[], [4], [-1], "every_third"])
def test_bad_layer_selection(teacher, layers):
    with pytest.raises(ValueError):
        student_from_teacher(teacher, layers)


def test_narrow_student(teacher):
    student = narrow_student(teacher, hidden_dim=8, num_layers=1, num_heads=2, intermediate_dim=16)
    assert encoder_shapes(student) == [{"hidden_dim": 8, "num_heads": 2, "head_dim": 4, "intermediate_dim": 16}]
    assert student.num_classes == teacher.num_classes and student.preprocessor is teacher.preprocessor
    assert student.backbone.vocabulary_size == teacher.backbone.vocabulary_size
    with pytest.raises(ValueError, match="divisible"):
        narrow_student(teacher, hidden_dim=10, num_layers=1, num_heads=4, intermediate_dim=16)


def test_narrow_student_of_another_family():
    backbone = keras_hub.models.DistilBertBackbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                                                   intermediate_dim=32, max_sequence_length=16)
    teacher = keras_hub.models.DistilBertTextClassifier(backbone, num_classes=3, preprocessor=None)
    student = narrow_student(teacher, hidden_dim=8, num_layers=1, num_heads=1, intermediate_dim=8)
    assert isinstance(student, keras_hub.models.DistilBertTextClassifier) and student.num_classes == 3
    # Layer-initialised students work for DistilBERT too (shrink keeps the family), with the teacher's layer 1.
    shallow = student_from_teacher(teacher, [1])
    assert isinstance(shallow, keras_hub.models.DistilBertTextClassifier) and len(encoder_layers(shallow)) == 1
    np.testing.assert_array_equal(encoder_layers(shallow)[0]._feedforward_output_dense.kernel,
                                  encoder_layers(teacher)[1]._feedforward_output_dense.kernel)
    albert = keras_hub.models.AlbertTextClassifier(keras_hub.models.AlbertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, embedding_dim=8, intermediate_dim=32,
        max_sequence_length=16), num_classes=3, preprocessor=None)
    one = student_from_teacher(albert, [1])          # ALBERT's depths are unshared first: one layer of its own
    assert isinstance(one, keras_hub.models.AlbertTextClassifier) and one.backbone.encoder_call_order == [0]
    with pytest.raises(UnsupportedModelError, match="AlbertBackbone"):
        narrow_student(albert, hidden_dim=8, num_layers=1, num_heads=1, intermediate_dim=8)


def test_narrow_student_of_deberta_v3_keeps_its_relative_positions():
    """DeBERTa-v3 has no absolute position table: the student takes the teacher's sequence length and buckets."""
    from tfbertopt.surgery import as_compressed

    backbone = keras_hub.models.DebertaV3Backbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                                                  intermediate_dim=32, max_sequence_length=16, bucket_size=4)
    teacher = keras_hub.models.DebertaV3TextClassifier(backbone, num_classes=3, preprocessor=None)
    for source in (teacher, as_compressed(teacher)):
        student = narrow_student(source, hidden_dim=8, num_layers=1, num_heads=2, intermediate_dim=8)
        assert isinstance(student, keras_hub.models.DebertaV3TextClassifier) and student.num_classes == 3
        assert (student.backbone.bucket_size, student.backbone.max_sequence_length) == (4, 16)
        x = {"token_ids": np.full((2, 6), 5, "int32"), "padding_mask": np.ones((2, 6), "int32")}
        assert student(x).shape == (2, 3)
