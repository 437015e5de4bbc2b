"""Fine-tuning through model.fit: it learns, it checkpoints, and batches are padded per batch."""

import numpy as np
import pytest

from tfbertopt.data.pipeline import batch_indices, encode, lengths, make_dataset
from tfbertopt.train import evaluate, finetune, warmup_linear_decay


def test_finetune_learns_the_demo_task(tiny_classifier, tmp_path):
    from tfbertopt.data.demo import demo_examples

    train, dev = demo_examples("train", 512), demo_examples("dev", 128)
    before = evaluate(tiny_classifier, dev)["accuracy"]
    history = finetune(tiny_classifier, train, dev, epochs=4, batch_size=16, learning_rate=3e-3,
                       length_grouping=1, checkpoint_dir=tmp_path / "ckpt", verbose=0)
    after = evaluate(tiny_classifier, dev)["accuracy"]
    assert after >= 0.8 > before + 0.1
    assert history.history["dev_accuracy"][-1] == pytest.approx(after)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("epoch_*.weights.h5")) == [
        f"epoch_{i:02d}.weights.h5" for i in range(1, 5)]


def test_schedule_warms_up_then_decays_to_zero():
    schedule = warmup_linear_decay(1e-3, total_steps=100, warmup_fraction=0.1)
    values = [float(schedule(i)) for i in range(101)]
    assert values[0] == 0.0 and values[10] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(values[:10], values[1:11]))
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[100] == pytest.approx(0.0, abs=1e-9)


def test_batches_cover_every_example_once_and_trim_padding(tiny_classifier, demo_data):
    train, _ = demo_data
    features = encode(train.texts, tiny_classifier.preprocessor)
    lens = lengths(features)
    for shuffle in (False, True):
        idx = np.concatenate(batch_indices(lens, 32, shuffle=shuffle, seed=3))
        assert sorted(idx.tolist()) == list(range(len(train)))
    seen = 0
    for x, y in make_dataset(features, train.labels, 32, shuffle=True):
        width = x["token_ids"].shape[1]
        assert width == int(np.asarray(x["padding_mask"]).sum(1).max())
        seen += len(y)
    assert seen == len(train)


def test_unshuffled_dataset_keeps_order(tiny_classifier, demo_data):
    train, _ = demo_data
    features = encode(train.texts[:40], tiny_classifier.preprocessor)
    labels = train.labels[:40]
    got = np.concatenate([np.asarray(y) for _, y in make_dataset(features, labels, 16)])
    np.testing.assert_array_equal(got, labels)


def test_encode_rejects_mixed_segments(tiny_classifier):
    with pytest.raises(ValueError, match="mix single sentences and sentence pairs"):
        encode([("a",), ("a", "b")], tiny_classifier.preprocessor)
    with pytest.raises(ValueError, match="no examples"):
        encode([], tiny_classifier.preprocessor)


def test_finetune_with_a_teacher_distils_into_the_student(tiny_classifier):
    """`finetune(..., teacher=)` trains the student through a Distiller: the teacher stays bit-identical, the
    loss terms are logged, and the student's KL to the teacher falls."""
    from tfbertopt.data.demo import demo_examples, demo_vocabulary
    from tfbertopt.distillation import DistillationConfig, kl_with_temperature
    from tfbertopt.models import tiny_bert_classifier
    from tfbertopt.train import predict_logits

    train, dev = demo_examples("train", 256), demo_examples("dev", 64)
    finetune(tiny_classifier, train, epochs=2, batch_size=16, learning_rate=3e-3, length_grouping=1, verbose=0)
    teacher_weights = [np.array(w) for w in tiny_classifier.get_weights()]
    student = tiny_bert_classifier(demo_vocabulary(), num_layers=1, seed=3)
    features = encode(dev.texts, student.preprocessor)

    def kl():
        return float(kl_with_temperature(predict_logits(student, features),
                                         predict_logits(tiny_classifier, features), 1.0))

    before = kl()
    history = finetune(student, train, dev, epochs=2, batch_size=16, learning_rate=3e-3, length_grouping=1,
                       verbose=0, teacher=tiny_classifier,
                       distillation=DistillationConfig(hard_label_weight=0.0, logits="kl", logits_weight=1.0))
    assert kl() < 0.5 * before
    assert "kd_logits_loss" in history.history and "dev_accuracy" in history.history
    for a, b in zip(teacher_weights, tiny_classifier.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_distillation_options_without_a_teacher_are_an_error(tiny_classifier, demo_data):
    with pytest.raises(ValueError, match="without a teacher"):
        finetune(tiny_classifier, demo_data[0], distillation={"logits": "kl"}, max_steps=1, verbose=0)


@pytest.mark.parametrize("with_teacher", [False, True])
def test_fit_traces_the_train_step_once(tiny_classifier, demo_data, with_teacher):
    """`build_training_state` creates the optimizer and metric variables before fit, so TensorFlow traces the step
    once (it traces it twice when the first trace creates variables); plain and distilling runs alike."""
    from tfbertopt.distillation import Distiller

    traces = []
    target = Distiller if with_teacher else type(tiny_classifier)
    original = target.train_step

    def counting(self, data):
        traces.append(1)
        return original(self, data)

    teacher = tiny_classifier if with_teacher else None
    student = tiny_classifier
    if with_teacher:
        from tfbertopt.distillation import narrow_student

        student = narrow_student(teacher, hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32)
    target.train_step = counting
    try:
        finetune(student, demo_data[0], epochs=1, batch_size=64, teacher=teacher, verbose=0)
    finally:
        target.train_step = original
    assert len(traces) == 1


def _zero_the_output_layer(model, epoch_to_spoil):
    """A callback that zeroes the classifier's output layer at the end of `epoch_to_spoil` (1-based), before the dev
    metrics see it: that epoch then predicts one class for every example."""
    import keras

    class Spoil(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epoch_to_spoil:
                for w in model.get_layer("logits").weights:
                    w.assign(np.zeros(w.shape, w.dtype))

    return Spoil()


@pytest.mark.parametrize("on_disk", [True, False])
def test_keep_best_ends_with_the_best_dev_epoch(tiny_classifier, tmp_path, on_disk):
    from tfbertopt.data.demo import demo_examples

    train, dev = demo_examples("train", 512), demo_examples("dev", 128)
    history = finetune(tiny_classifier, train, dev, epochs=5, batch_size=16, learning_rate=3e-3, length_grouping=1,
                       checkpoint_dir=tmp_path / "ckpt" if on_disk else None, verbose=0, keep="best",
                       callbacks=[_zero_the_output_layer(tiny_classifier, 5)])
    scores = history.history["dev_accuracy"]
    assert scores[-1] < max(scores[:-1])                     # the spoiled last epoch is not the best
    kept = history.history["kept_epoch"][0]
    assert scores[kept - 1] == max(scores)
    assert evaluate(tiny_classifier, dev)["accuracy"] == pytest.approx(scores[kept - 1])
    assert any(np.abs(w).sum() > 0 for w in tiny_classifier.get_layer("logits").get_weights())
    if on_disk:
        import json
        assert json.loads((tmp_path / "ckpt" / "dev_scores.json").read_text()) == {
            str(i + 1): pytest.approx(s) for i, s in enumerate(scores)}


def test_best_epoch_after_a_resume_loads_an_epoch_trained_before_the_stop(tiny_classifier, tmp_path):
    # A resumed run's fit() sees only its own epochs; the scores and weights of the earlier ones are on disk.
    import json

    from tfbertopt.train import BestEpoch

    before = tiny_classifier.get_weights()
    tiny_classifier.save_weights(str(tmp_path / "epoch_01.weights.h5"))
    (tmp_path / "dev_scores.json").write_text(json.dumps({"1": 0.9}))
    for w in tiny_classifier.weights:
        w.assign(np.zeros(w.shape, w.dtype))
    best = BestEpoch("dev_accuracy", tmp_path)
    best.set_model(tiny_classifier)
    best.on_train_begin()
    best.on_epoch_end(1, {"dev_accuracy": 0.6})              # epoch 2, after the resume
    best.on_train_end()
    assert best.best_epoch == 1
    assert all(np.array_equal(a, b) for a, b in zip(tiny_classifier.get_weights(), before))
    assert json.loads((tmp_path / "dev_scores.json").read_text()) == {"1": 0.9, "2": 0.6}


def test_keep_best_needs_a_dev_set_and_a_known_choice(tiny_classifier, demo_data):
    train, _ = demo_data
    with pytest.raises(ValueError, match="dev"):
        finetune(tiny_classifier, train, None, keep="best")
    with pytest.raises(ValueError, match="'last' or 'best'"):
        finetune(tiny_classifier, train, None, keep="first")
