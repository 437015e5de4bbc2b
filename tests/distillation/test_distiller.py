"""Distiller: model.fit distillation from frozen teachers, logged loss terms, projections and clear errors."""

import keras
import numpy as np
import pytest

from tfbertopt.data.demo import demo_vocabulary
from tfbertopt.data.pipeline import encode, make_dataset
from tfbertopt.distillation import AttentionUnavailableError, DistillationConfig, Distiller
from tfbertopt.kernels import encoder_layers
from tfbertopt.models import tiny_bert_classifier

# make_dataset's generator datasets have no known length, so Keras warns at their end of every evaluate().
pytestmark = pytest.mark.filterwarnings("ignore:Your input ran out of data")


def tiny(num_layers=1, hidden_dim=16, num_heads=2, seed=1, vocabulary=None, **kwargs):
    return tiny_bert_classifier(vocabulary or demo_vocabulary(), num_layers=num_layers, hidden_dim=hidden_dim,
                                num_heads=num_heads, intermediate_dim=2 * hidden_dim, sequence_length=16, seed=seed,
                                **kwargs)


@pytest.fixture()
def teacher(tiny_classifier):
    """The shared 2-layer H32 tiny BERT, frozen (the Distiller would warn and freeze it otherwise)."""
    tiny_classifier.trainable = False
    return tiny_classifier


@pytest.fixture()
def train_features(teacher, demo_data):
    train = demo_data[0]
    return encode(train.texts[:128], teacher.preprocessor), train.labels[:128]


def test_fit_lowers_the_distillation_loss_and_leaves_the_teacher_untouched(teacher, train_features, tmp_path):
    from tfbertopt.saving import load_model

    features, labels = train_features
    student = tiny(num_layers=1, hidden_dim=16)
    config = DistillationConfig(hard_label_weight=0.1, logits="kl", logits_weight=1.0, temperature=2.0,
                                hidden="mse", hidden_weight=1.0)
    distiller = Distiller(student, teacher, config)
    # Teacher width 32, student width 16: hidden-state distillation goes through a learned projection.
    assert list(distiller.projections) == ["teacher0_layer0"]
    projection = distiller.projections["teacher0_layer0"]
    assert tuple(projection.kernel.shape) == (16, 32)
    trainable = {id(v) for v in distiller.trainable_variables}
    assert id(projection.kernel) in trainable and not {id(v) for v in teacher.weights} & trainable
    assert not {id(v) for v in projection.weights} & {id(v) for v in student.weights}

    teacher_before = [np.array(w) for w in teacher.get_weights()]
    projection_before = np.array(projection.kernel)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    eval_ds = make_dataset(features, labels, batch_size=64)
    before = distiller.evaluate(eval_ds, return_dict=True, verbose=0)
    history = distiller.fit(make_dataset(features, labels, batch_size=32, shuffle=True, repeat_epochs=3),
                            epochs=3, steps_per_epoch=4, shuffle=False, verbose=0)
    after = distiller.evaluate(eval_ds, return_dict=True, verbose=0)

    assert {"loss", "hard_loss", "kd_logits_loss", "kd_hidden_loss", "accuracy"} <= set(history.history)
    assert "kd_attention_loss" not in history.history            # inactive terms are not logged
    assert after["loss"] < before["loss"] and after["kd_hidden_loss"] < before["kd_hidden_loss"]
    for a, b in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)                       # bit-identical
    assert not np.array_equal(projection_before, np.array(projection.kernel))

    path = str(tmp_path / "student.keras")                       # the student is an ordinary model afterwards
    distiller.student.save(path)
    reloaded = load_model(path, compile=False)
    x = {k: v[:4] for k, v in features.items()}
    np.testing.assert_allclose(reloaded(x), student(x), atol=1e-5)


def test_two_teachers(teacher, train_features):
    features, labels = train_features
    deep = tiny(num_layers=4, hidden_dim=16, num_heads=4, seed=5)
    deep.trainable = False
    student = tiny(num_layers=2, hidden_dim=16, num_heads=2)
    config = DistillationConfig(logits="kl", hidden="cosine", hidden_weight=1.0, attention="kl",
                                attention_weight=1.0)
    distiller = Distiller(student, [teacher, deep], config, teacher_weights=[3, 1])
    assert distiller.teacher_weights == [0.75, 0.25]
    assert distiller.layer_maps == [{0: 0, 1: 1}, {0: 1, 1: 3}]
    assert sorted(distiller.projections) == ["teacher0_layer0", "teacher0_layer1"]   # widths 16 -> 32 only
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = distiller.fit(make_dataset(features, labels, batch_size=32), epochs=1, steps_per_epoch=2,
                            shuffle=False, verbose=0)
    logs = {k: v[-1] for k, v in history.history.items()}
    assert {"kd_logits_loss", "kd_hidden_loss", "kd_attention_loss", "hard_loss"} <= set(logs)
    assert all(np.isfinite(v) for v in logs.values())


def test_every_term_on_unlabelled_data(teacher, train_features):
    features, _ = train_features
    student = tiny(num_layers=1, hidden_dim=16, num_heads=1)
    config = DistillationConfig(hard_label_weight=1.0, logits="soft_ce", hidden="mse", hidden_weight=1.0,
                                attention="mse", attention_weight=1.0, embedding_weight=1.0, cls_weight=1.0,
                                layer_map="last")
    distiller = Distiller(student, teacher, config)
    assert sorted(distiller.projections) == ["teacher0_embedding", "teacher0_layer0"]
    distiller.compile(optimizer="adam")
    logs = distiller.evaluate(make_dataset(features, None, batch_size=64), return_dict=True, verbose=0)
    for term in ("logits", "hidden", "attention", "embedding", "cls"):
        assert np.isfinite(logs[f"kd_{term}_loss"]) and logs[f"kd_{term}_loss"] > 0
    assert logs["hard_loss"] == 0.0                                 # no labels: the hard term is skipped


def test_trainable_teacher_is_frozen_with_a_warning(tiny_classifier):
    with pytest.warns(UserWarning, match="freezes it"):
        Distiller(tiny(), tiny_classifier)
    assert not tiny_classifier.trainable and not tiny_classifier.trainable_weights


def test_different_numbers_of_classes(tiny_classifier):
    with pytest.raises(ValueError, match="student predicts 3 classes but teacher 0 .* predicts 2"):
        Distiller(tiny(num_classes=3), tiny_classifier)
    assert tiny_classifier.trainable          # a Distiller that could not be built froze nothing


def test_kl_on_a_regression_head():
    teacher = tiny(num_classes=1, seed=2)
    teacher.trainable = False
    with pytest.raises(ValueError, match="use logits='mse'"):
        Distiller(tiny(num_classes=1), teacher)
    Distiller(tiny(num_classes=1), teacher, DistillationConfig(logits="mse"))


def test_layer_map_outside_the_teacher(teacher):
    config = DistillationConfig(hidden="mse", hidden_weight=1.0, layer_map={0: 5})
    with pytest.raises(ValueError, match="teacher layer 5 .*teacher's 2 layers"):
        Distiller(tiny(), teacher, config)


def test_attention_loss_with_a_model_that_cannot_give_it(teacher, monkeypatch):
    layer = encoder_layers(teacher)[1]
    plain = layer.call
    monkeypatch.setattr(layer, "call", lambda inputs, padding_mask=None, training=None: plain(inputs, padding_mask))
    config = DistillationConfig(attention="kl", attention_weight=1.0)
    with pytest.raises(AttentionUnavailableError, match="from the teacher 0 .*cannot return attention"):
        Distiller(tiny(), teacher, config)
    Distiller(tiny(), teacher, DistillationConfig(hidden="mse", hidden_weight=1.0))   # hidden states still work


def test_different_tokenizers(teacher):
    same_size = [w + "x" for w in demo_vocabulary()]          # same vocabulary size, other words
    for vocabulary in (["only", "three", "words"], same_size):
        student = tiny(vocabulary=vocabulary)
        with pytest.raises(ValueError, match="different tokenizers"):
            Distiller(student, teacher)
        Distiller(student, teacher, input_adapter=lambda x: x)   # the user says how to map the inputs


def test_other_bad_arguments(teacher):
    with pytest.raises(ValueError, match="share"):
        Distiller(teacher, teacher)
    with pytest.raises(ValueError, match="must be a classifier"):
        Distiller(tiny().backbone, teacher)
    with pytest.raises(ValueError, match="teacher_weights has 2 entries for 1 teachers"):
        Distiller(tiny(), teacher, teacher_weights=[1, 1])
    with pytest.raises(ValueError, match="keras.losses.Loss object"):
        Distiller(tiny(), teacher).compile(optimizer="adam", loss="sparse_categorical_crossentropy")
