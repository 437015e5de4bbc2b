"""Teacher-output cache: size estimate and limit, safe on-disk format, training from it equals training with the
live teacher, and clear errors when the cache does not fit the data, tokenizer or loss terms."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfbertopt.data.demo import demo_vocabulary
from tfbertopt.data.pipeline import encode
from tfbertopt.distillation import (CacheMismatchError, CacheTooLargeError, DistillationConfig, Distiller,
                                    TeacherCache, bilstm_student, cache_teacher_outputs, estimate_cache_bytes)
from tfbertopt.models import tiny_bert_classifier
from tfbertopt.train import finetune

pytestmark = pytest.mark.filterwarnings("ignore:Your input ran out of data")


@pytest.fixture()
def teacher(tiny_classifier):
    tiny_classifier.trainable = False
    return tiny_classifier


@pytest.fixture()
def train(demo_data):
    return demo_data[0].take(96)


def student(seed=3):
    return tiny_bert_classifier(demo_vocabulary(), num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32,
                                sequence_length=16, seed=seed, dropout=0.0)


def test_estimate_is_printed_first_and_matches_the_files(teacher, train, tmp_path, capsys):
    estimate = estimate_cache_bytes(teacher, train, hidden_layers=[0, 1], attention_layers=[1], embedding=True)
    path = str(tmp_path / "cache")
    cache = cache_teacher_outputs(teacher, train, path, hidden_layers=[0, 1], attention_layers=[1], embedding=True)
    assert f"{cache.num_examples} examples" in capsys.readouterr().out
    files = sorted(os.listdir(path))
    assert files == ["attention_1.npy", "embedding.npy", "hidden_0.npy", "hidden_1.npy", "keys.npy", "logits.npy",
                     "meta.json"]
    for name in files[:-1]:   # plain arrays: readable without pickle
        array = np.load(os.path.join(path, name), allow_pickle=False)
        assert array.dtype != object and array.shape[0] == len(train)
    data_bytes = sum(np.load(os.path.join(path, n), allow_pickle=False).nbytes for n in files[:-1])
    assert estimate["total"] == data_bytes == cache.size_bytes
    width = int(encode(train.texts, teacher.preprocessor)["padding_mask"].sum(1).max())
    assert cache.width == width and cache.arrays["attention_1"].shape == (len(train), 2, width, width)
    assert json.loads(open(os.path.join(path, "meta.json")).read())["hidden_layers"] == [0, 1]


def test_limits_and_bad_requests(teacher, train, tmp_path):
    path = str(tmp_path / "cache")
    with pytest.raises(CacheTooLargeError, match="above max_bytes=1000"):
        cache_teacher_outputs(teacher, train, path, hidden_layers=[1], max_bytes=1000, verbose=0)
    assert not os.path.exists(path)                        # refused before writing anything
    cache_teacher_outputs(teacher, train, path, hidden_layers=[1], max_bytes=None, verbose=0)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        cache_teacher_outputs(teacher, train, path, verbose=0)
    with pytest.raises(ValueError, match=r"hidden_layers \[2\] are not 0-based layers of the teacher's 2"):
        cache_teacher_outputs(teacher, train, str(tmp_path / "c2"), hidden_layers=[2], verbose=0)
    with pytest.raises(ValueError, match="nothing to cache"):
        cache_teacher_outputs(teacher, train, str(tmp_path / "c3"), logits=False, verbose=0)
    with pytest.raises(FileNotFoundError, match="no teacher cache"):
        TeacherCache(str(tmp_path / "missing"))


@pytest.mark.parametrize("config", [
    DistillationConfig(hard_label_weight=0.5, logits="kl", logits_weight=0.5, temperature=2.0),
    DistillationConfig(hard_label_weight=0.1, logits="mse", logits_weight=1.0, hidden="mse", hidden_weight=1.0,
                       attention="mse", attention_weight=1.0, embedding_weight=1.0, cls_weight=1.0,
                       layer_map="last"),
], ids=["logits", "every-term"])
def test_training_from_the_cache_equals_the_live_teacher(config, teacher, train, tmp_path):
    cache = cache_teacher_outputs(teacher, train, str(tmp_path / "cache"), hidden_layers=[1], attention_layers=[1],
                                  embedding=True, verbose=0)
    kwargs = dict(epochs=2, batch_size=16, learning_rate=1e-3, seed=7, verbose=0, distillation=config)
    live = finetune(student(), train, None, teacher=teacher, **kwargs).history
    cached = finetune(student(), train, None, teacher=cache, **kwargs).history
    terms = [k for k in live if k.endswith("_loss") or k == "loss"]
    assert len(terms) == len(config.active_terms()) + 1
    for term in terms:
        np.testing.assert_allclose(cached[term], live[term], rtol=1e-4, atol=1e-6, err_msg=term)


def test_word_student_from_the_cache(teacher, train, tmp_path):
    cache = cache_teacher_outputs(teacher, train, str(tmp_path / "cache"), verbose=0)
    history = finetune(bilstm_student(teacher, units=4, hidden_units=None), train, None, epochs=1, batch_size=32,
                       verbose=0, teacher=cache, distillation=DistillationConfig(logits="mse"))
    assert np.isfinite(history.history["kd_logits_loss"]).all()


def test_mismatched_cache(teacher, train, demo_data, tmp_path):
    cache = cache_teacher_outputs(teacher, train, str(tmp_path / "cache"), verbose=0)
    # Another number of examples, or other examples: named before training.
    with pytest.raises(CacheMismatchError, match="holds 96 examples but the training data has 64"):
        cache.check_features(demo_data[0].take(64), teacher)
    with pytest.raises(CacheMismatchError, match="are not in the teacher cache"):
        cache.check_features(encode(demo_data[0].texts[160:256], teacher.preprocessor))
    cache.check_features(train, teacher)
    # During training, a batch the cache does not hold stops with the cache's message.
    with pytest.raises(tf.errors.InvalidArgumentError, match="not in the teacher cache"):
        finetune(student(), demo_data[1], None, epochs=1, batch_size=16, verbose=0, teacher=cache)
    # Another vocabulary: refused when the Distiller is built.
    foreign = tiny_bert_classifier(["only", "three", "words"], num_layers=1, hidden_dim=16, sequence_length=16)
    with pytest.raises(CacheMismatchError, match="another vocabulary"):
        Distiller(foreign, cache)
    # Terms needing outputs the cache lacks.
    with pytest.raises(ValueError, match=r"rebuild it with hidden_layers including \[1\]"):
        Distiller(student(), cache, DistillationConfig(hidden="mse", hidden_weight=1.0, layer_map="last"))
    with pytest.raises(ValueError, match="embedding=True"):
        Distiller(student(), cache, DistillationConfig(embedding_weight=1.0))
    with pytest.raises(ValueError, match="takes no input_adapter"):
        Distiller(student(), cache, input_adapter=lambda x: x)
    with pytest.raises(ValueError, match="student predicts 3 classes"):
        Distiller(tiny_bert_classifier(demo_vocabulary(), num_layers=1, num_classes=3, sequence_length=16), cache)


def test_cache_keyed_by_a_trimmed_student(teacher, train, tmp_path):
    from tfbertopt.evaluation import predict_logits
    from tfbertopt.vocabulary import select_tokens, trim_vocabulary

    trimmed = trim_vocabulary(student(), select_tokens(student(), train.texts[:8], characters=True))
    ours, theirs = encode(train.texts, trimmed.preprocessor), encode(train.texts, teacher.preprocessor)
    assert (ours["token_ids"].shape != theirs["token_ids"].shape) or (ours["token_ids"] != theirs["token_ids"]).any()
    cache = cache_teacher_outputs(teacher, train, str(tmp_path / "cache"), verbose=0, student=trimmed)
    # The teacher read its own tokenization; the rows are found by the student's.
    np.testing.assert_allclose(cache.logits, predict_logits(teacher, theirs), atol=1e-5)
    cache.check_features(ours)
    with pytest.raises(CacheMismatchError, match="are not in the teacher cache"):
        cache.check_features(theirs)
    cache.check_vocabulary(trimmed)
    with pytest.raises(CacheMismatchError, match="another vocabulary"):
        cache.check_vocabulary(teacher)
    history = finetune(trimmed, train, None, epochs=1, batch_size=32, verbose=0, teacher=cache,
                       distillation=DistillationConfig(hard_label_weight=0.5, logits="kl", logits_weight=0.5))
    assert np.isfinite(history.history["kd_logits_loss"]).all()
    with pytest.raises(ValueError, match="holds logits only"):
        cache_teacher_outputs(teacher, train, str(tmp_path / "c2"), hidden_layers=[1], verbose=0, student=trimmed)
    with pytest.raises(TypeError, match="needs the texts"):
        cache_teacher_outputs(teacher, theirs, str(tmp_path / "c3"), verbose=0, student=trimmed)
