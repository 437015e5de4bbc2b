"""Tang et al.'s BiLSTM and a Kim CNN over the teacher's word embeddings: training through the Distiller and
finetune, saving, LiteRT export, padding invariance and clear errors."""

import keras
import numpy as np
import pytest

from tfbertopt.data.pipeline import encode, make_dataset, without_preprocessor
from tfbertopt.distillation import (AttentionUnavailableError, DistillationConfig, Distiller, LstmStudent,
                                    bilstm_student, cnn_student, student_macs)
from tfbertopt.saving import load_model
from tfbertopt.train import evaluate, finetune, predict_logits

pytestmark = pytest.mark.filterwarnings("ignore:Your input ran out of data")

TANG = DistillationConfig(hard_label_weight=0.0, logits="mse", logits_weight=1.0)


@pytest.fixture()
def teacher(tiny_classifier):
    tiny_classifier.trainable = False
    return tiny_classifier


def small(kind, teacher, **kwargs):
    if kind == "bilstm":
        return bilstm_student(teacher, units=8, hidden_units=16, **kwargs)
    return cnn_student(teacher, filters=6, kernel_sizes=(2, 3), **kwargs)


@pytest.mark.parametrize("kind", ["bilstm", "cnn"])
def test_shape_inputs_and_copied_embeddings(kind, teacher, demo_data):
    student = small(kind, teacher)
    assert student.preprocessor is teacher.preprocessor
    assert sorted(student.input) == ["padding_mask", "segment_ids", "token_ids"]     # the teacher's feature dict
    table = teacher.backbone.token_embedding.embeddings
    np.testing.assert_array_equal(student.get_layer("token_embedding").embeddings, table)
    x = encode(demo_data[1].texts[:8], student.preprocessor)
    logits = np.asarray(student(x))
    assert logits.shape == (8, 2) and np.isfinite(logits).all()
    # Per-batch padding does not change the outputs (LSTM masking, zeroed pads, masked max-pool).
    width = int(x["padding_mask"].sum(1).max())
    np.testing.assert_allclose(student({k: v[:, :width] for k, v in x.items()}), logits, atol=1e-5)
    assert student_macs(student, 16) > 0


def test_options(teacher):
    frozen = bilstm_student(teacher, units=4, hidden_units=None, projection_dim=8, trainable_embeddings=False)
    assert not frozen.get_layer("token_embedding").trainable
    assert frozen.get_layer("embedding_projection").kernel.shape == (32, 8)
    names = {v.path for v in frozen.trainable_variables}
    assert not any("token_embedding" in n for n in names)
    assert bilstm_student(teacher, units=4).get_layer("token_embedding").trainable


@pytest.mark.parametrize("kwargs, message", [
    ({"units": 0}, "units must be a positive integer"),
    ({"units": 4, "dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
    ({"units": 4, "projection_dim": -1}, "projection_dim must be a positive integer"),
])
def test_bad_options(teacher, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bilstm_student(teacher, **kwargs)


def test_bad_cnn_options_and_teacher(teacher):
    with pytest.raises(ValueError, match="at least one kernel width"):
        cnn_student(teacher, kernel_sizes=())
    with pytest.raises(ValueError, match="kernel_sizes entry must be a positive integer"):
        cnn_student(teacher, kernel_sizes=(3, 0))
    with pytest.raises(ValueError, match="must be a keras-hub classifier"):
        bilstm_student(teacher.backbone)


@pytest.mark.parametrize("kind", ["bilstm", "cnn"])
def test_distiller_with_logits_mse_lowers_the_loss(kind, teacher, demo_data):
    train = demo_data[0]
    features = encode(train.texts[:128], teacher.preprocessor)
    kernel, bias = teacher.output_dense.get_weights()
    teacher.output_dense.set_weights([kernel * 30, bias])     # teacher logits far from the student's ~0 start
    student = small(kind, teacher, dropout=0.0)
    distiller = Distiller(student, teacher, TANG)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    eval_ds = make_dataset(features, train.labels[:128], batch_size=64)
    before = distiller.evaluate(eval_ds, return_dict=True, verbose=0)["kd_logits_loss"]
    distiller.fit(make_dataset(features, train.labels[:128], batch_size=32, shuffle=True, repeat_epochs=3),
                  epochs=3, steps_per_epoch=4, shuffle=False, verbose=0)
    after = distiller.evaluate(eval_ds, return_dict=True, verbose=0)["kd_logits_loss"]
    assert after < before


def test_finetune_with_a_teacher_and_evaluate(teacher, demo_data):
    train, dev = demo_data
    student = small("bilstm", teacher)
    history = finetune(student, train.take(64), dev, epochs=1, batch_size=16, learning_rate=1e-3, verbose=0,
                       teacher=teacher, distillation=TANG)
    assert {"kd_logits_loss", "dev_accuracy"} <= set(history.history)
    assert "hard_loss" not in history.history
    assert set(evaluate(student, dev)) == {"accuracy"}
    assert student.preprocessor is teacher.preprocessor        # without_preprocessor restored it


@pytest.mark.parametrize("term", [dict(hidden="mse", hidden_weight=1.0), dict(embedding_weight=1.0),
                                  dict(cls_weight=1.0)])
def test_layer_terms_are_refused_with_the_reason(teacher, term):
    with pytest.raises(ValueError, match=r"student .*LstmStudent.* is not a transformer.*logits='mse'"):
        Distiller(small("bilstm", teacher), teacher, DistillationConfig(**term))


def test_attention_term_is_refused(teacher):
    with pytest.raises(ValueError, match="not a transformer.*'attention'"):
        Distiller(small("cnn", teacher), teacher, DistillationConfig(attention="kl", attention_weight=1.0))
    with pytest.raises(AttentionUnavailableError):
        from tfbertopt.distillation.internals import internals_view

        internals_view(small("cnn", teacher), attention=True)


def test_student_over_another_vocabulary_is_refused(teacher):
    from tfbertopt.models import tiny_bert_classifier

    other = tiny_bert_classifier(["only", "three", "words"], sequence_length=16)
    with pytest.raises(ValueError, match="different tokenizers"):
        Distiller(small("bilstm", other), teacher)


@pytest.mark.parametrize("kind", ["bilstm", "cnn"])
def test_save_and_load_give_identical_outputs(kind, teacher, demo_data, tmp_path):
    student = small(kind, teacher)
    student.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    path = str(tmp_path / f"{kind}.keras")
    student.save(path)
    reloaded = load_model(path)
    assert type(reloaded) is type(student) and reloaded.get_config()["kernel_sizes" if kind == "cnn" else "units"]
    features = encode(demo_data[1].texts, reloaded.preprocessor)   # the preprocessor is saved with the model
    np.testing.assert_array_equal(features["token_ids"], encode(demo_data[1].texts, teacher.preprocessor)["token_ids"])
    np.testing.assert_array_equal(predict_logits(reloaded, features), predict_logits(student, features))


@pytest.mark.parametrize("kind", ["bilstm", "cnn"])
def test_litert_export_float32_and_dynamic(kind, teacher, demo_data, tmp_path):
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.verify import verify_litert

    student = small(kind, teacher)
    dev = demo_data[1].take(24)
    for quantization in ("float32", "dynamic"):
        result = export_litert(student, str(tmp_path / f"{kind}_{quantization}.tflite"), quantization, 16)
        assert not [op for op in result.ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")]
        assert result.input_names == ("token_ids", "padding_mask", "segment_ids")
        assert ("WHILE" if kind == "bilstm" else "CONV_2D") in result.ops
        report = verify_litert(result.path, student, dev, quantized=quantization != "float32")
        assert report.passed, report.summary()
    with without_preprocessor(student):
        assert student.preprocessor is None
    assert student.preprocessor is teacher.preprocessor


def test_student_class_is_registered():
    assert keras.saving.get_registered_name(LstmStudent) == "tfbertopt>LstmStudent"


def test_a_saved_word_student_loads_in_a_fresh_process(tmp_path):
    """`tfbertopt.saving.load_model` registers every tfbertopt class itself: no import order, no custom_objects."""
    import subprocess
    import sys

    from tfbertopt.distillation import bilstm_student
    from tfbertopt.models import tiny_bert_classifier

    path = str(tmp_path / "s.keras")
    bilstm_student(tiny_bert_classifier(["a", "b", "c"], sequence_length=8), units=4, hidden_units=8).save(path)
    code = f"from tfbertopt.saving import load_model; print(type(load_model({path!r})).__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("LstmStudent"), result.stderr[-2000:]


def _pair_features(student):
    """The student's [a, b, a * b, |a - b|] features (the input of its hidden dense or output dropout)."""
    first = "hidden_dense" if student.hidden_units else "output_dropout"
    return keras.Model(student.input, student.get_layer(first).input)


@pytest.mark.parametrize("kind", ["bilstm", "cnn"])
def test_siamese_encodes_each_sentence_alone(kind, teacher, tmp_path):
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.verify import run_litert

    student = small(kind, teacher, siamese=True, dropout=0.0)
    features = _pair_features(student)
    pairs = [("good movie", "bad film"), ("good movie", "fine"), ("a good good movie here", "bad film")]
    x = encode(pairs, student.preprocessor)
    out = np.asarray(features(x))
    n = out.shape[1] // 4
    a, b = out[:, :n], out[:, n:2 * n]
    np.testing.assert_allclose(a[0], a[1], atol=1e-5)      # sentence A's code does not see sentence B
    np.testing.assert_allclose(b[0], b[2], atol=1e-5)      # nor B's code A, wherever B starts
    assert not np.allclose(b[0], b[1], atol=1e-3)
    np.testing.assert_allclose(out[:, 2 * n:3 * n], a * b, atol=1e-5)
    np.testing.assert_allclose(out[:, 3 * n:], np.abs(a - b), atol=1e-5)
    # MACs: the encoder runs once per sentence, so twice the packed student's encoder MACs.
    def encoder_macs(model):
        dense = sum(int(np.prod(l.kernel.shape)) for l in model.layers if isinstance(l, keras.layers.Dense))
        return student_macs(model, 16) - dense

    assert encoder_macs(student) == 2 * encoder_macs(small(kind, teacher, dropout=0.0)) > 0
    width = int(x["padding_mask"].sum(1).max())
    np.testing.assert_allclose(student({k: v[:, :width] for k, v in x.items()}), student(x), atol=1e-5)
    student.save(tmp_path / "siamese.keras")
    reloaded = load_model(tmp_path / "siamese.keras")
    assert reloaded.siamese
    np.testing.assert_array_equal(predict_logits(reloaded, x), predict_logits(student, x))
    path = export_litert(student, str(tmp_path / "siamese.tflite"), "float32", 16).path
    np.testing.assert_allclose(run_litert(path, x), predict_logits(student, x), atol=1e-4)


def test_siamese_needs_segment_ids(teacher):
    from tfbertopt.distillation.word_students import CnnStudent

    with pytest.raises(ValueError, match="siamese=True .* needs segment_ids"):
        CnnStudent(30, 8, segment_ids=False, siamese=True)
