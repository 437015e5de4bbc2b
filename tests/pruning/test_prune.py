"""Magnitude and N:M pruning of keras-hub models inside model.fit: exact sparsity, zeros that stay zero,
state that survives save/load and BackupAndRestore."""

import keras
import numpy as np
import pytest

from tfbertopt.data.pipeline import encode, make_dataset, without_preprocessor
from tfbertopt.kernels import find_kernels
from tfbertopt.pruning import (
    ConstantSparsity,
    PolynomialDecay,
    PruningPolicy,
    PruningSummaries,
    UpdatePruningStep,
    get_pruning,
    is_nm_sparse,
    prune_low_magnitude,
    strip_pruning,
)
from tfbertopt.saving import load_model
from tfbertopt.train import predict_logits


def _fit(model, data, epochs=2, callbacks=(), optimizer=None, seed=0, shuffle=True):
    train, _ = data
    features = encode(train.texts, model.preprocessor)
    keras.utils.set_random_seed(seed)
    if optimizer is not None or getattr(model, "optimizer", None) is None:
        model.compile(optimizer or keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = make_dataset(features, train.labels, 32, shuffle=shuffle, seed=seed, sort_window=1, repeat_epochs=epochs)
    with without_preprocessor(model):
        return model.fit(ds, epochs=epochs, steps_per_epoch=len(train) // 32, callbacks=list(callbacks), verbose=0)


def _kernels(model):
    return {r.path: keras.ops.convert_to_numpy(r.variable).copy() for r in PruningPolicy().select(model)}


def test_gmp_reaches_exact_sparsity_and_zeros_stay_zero(tiny_classifier, demo_data):
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=8, frequency=2)
    model = prune_low_magnitude(tiny_classifier, schedule)
    _fit(model, demo_data, epochs=2, callbacks=[UpdatePruningStep()])  # 16 steps: 8 after the last update
    for path, w in _kernels(model).items():
        assert (w == 0).sum() == round(0.8 * w.size), path
    # Momentum-carrying Adam ran 8 more steps after the final mask: the zeros are still exact.
    before = {p: w == 0 for p, w in _kernels(model).items()}
    _fit(model, demo_data, epochs=1, callbacks=[UpdatePruningStep()])
    for path, w in _kernels(model).items():
        np.testing.assert_array_equal(w == 0, before[path])


def test_unpruned_kernels_untouched_and_head_excluded(tiny_classifier, demo_data):
    model = prune_low_magnitude(tiny_classifier, ConstantSparsity(0.5, 0, frequency=1000),
                                PruningPolicy(roles=["ffn"], layers=[0]))
    _fit(model, demo_data, epochs=1, callbacks=[UpdatePruningStep()])
    for ref in find_kernels(model):
        w = keras.ops.convert_to_numpy(ref.variable)
        if ref.role in ("ffn_intermediate", "ffn_output") and ref.layer_index == 0:
            assert (w == 0).mean() == pytest.approx(0.5)
        else:
            assert (w == 0).sum() == 0, ref.path


def test_global_threshold_reaches_exact_total(tiny_classifier, demo_data):
    model = prune_low_magnitude(tiny_classifier, ConstantSparsity(0.7, 0), global_threshold=True)
    get_pruning(model).update(0)
    kernels = _kernels(model)
    total = sum(w.size for w in kernels.values())
    assert sum((w == 0).sum() for w in kernels.values()) == round(0.7 * total)
    assert len({round(float((w == 0).mean()), 3) for w in kernels.values()}) > 1  # per-kernel rates differ


def test_two_four_sparsity_along_input_axis(tiny_classifier, demo_data):
    model = prune_low_magnitude(tiny_classifier, ConstantSparsity(0.5, 0, frequency=1000), sparsity_m_by_n=(2, 4))
    _fit(model, demo_data, epochs=1, callbacks=[UpdatePruningStep()])
    for ref in PruningPolicy().select(model):
        w = keras.ops.convert_to_numpy(ref.variable)
        matrix = w.reshape(-1, w.shape[-1]) if ref.role == "attention_output" else w.reshape(w.shape[0], -1)
        assert is_nm_sparse(matrix, 2, 4, axis=0), ref.path
        assert (matrix == 0).mean() == 0.5


def test_masks_and_step_survive_keras_save_load(demo_data, tmp_path):
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    # No dropout: Keras does not save dropout seed-generator states, so only then can the continued runs of the
    # original and the reloaded model be compared bit for bit.
    model = tiny_bert_classifier(demo_vocabulary(), num_layers=2, hidden_dim=32, intermediate_dim=64,
                                 sequence_length=16, dropout=0.0)
    schedule = PolynomialDecay(0.0, 0.75, begin_step=0, end_step=12, frequency=3)
    model = prune_low_magnitude(model, schedule)
    _fit(model, demo_data, epochs=1, callbacks=[UpdatePruningStep()])  # 8 steps: mid-schedule
    path = tmp_path / "pruned.keras"
    model.save(path)
    loaded = load_model(path)
    assert int(loaded.optimizer.iterations) == 8
    for p, w in _kernels(model).items():
        np.testing.assert_array_equal(w, _kernels(loaded)[p])
    features = encode(demo_data[1].texts, model.preprocessor)
    np.testing.assert_array_equal(predict_logits(model, features), predict_logits(loaded, features))
    # Continue both: the reloaded one must end exactly like the original.
    loaded = prune_low_magnitude(loaded, schedule)
    _fit(model, demo_data, epochs=1, callbacks=[UpdatePruningStep()], seed=1)
    _fit(loaded, demo_data, epochs=1, callbacks=[UpdatePruningStep()], seed=1)
    for p, w in _kernels(model).items():
        np.testing.assert_array_equal(w == 0, _kernels(loaded)[p] == 0)
        assert (w == 0).sum() == round(0.75 * w.size)


def test_backup_and_restore_resume_gives_same_masks(demo_data, tmp_path):
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    def make():
        # Same data order every epoch and no dropout: a resumed fit restarts its dataset and Keras does not
        # checkpoint dropout seed states, so only then can the runs be compared bit for bit.
        m = tiny_bert_classifier(demo_vocabulary(), num_layers=2, hidden_dim=32, intermediate_dim=64,
                                 sequence_length=16, seed=7, dropout=0.0)
        return prune_low_magnitude(m, PolynomialDecay(0.0, 0.6, begin_step=0, end_step=20, frequency=5))

    class StopAfter(keras.callbacks.Callback):
        def __init__(self, epoch):
            super().__init__()
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            if epoch == self.epoch:
                raise KeyboardInterrupt

    reference = make()
    _fit(reference, demo_data, epochs=3, callbacks=[UpdatePruningStep()], shuffle=False)
    backup = str(tmp_path / "backup")
    interrupted = make()
    with pytest.raises(KeyboardInterrupt):
        _fit(interrupted, demo_data, epochs=3, callbacks=[UpdatePruningStep(),
                                                          keras.callbacks.BackupAndRestore(backup), StopAfter(0)],
             shuffle=False)
    resumed = make()  # a new process would rebuild the model from scratch
    _fit(resumed, demo_data, epochs=3, callbacks=[UpdatePruningStep(), keras.callbacks.BackupAndRestore(backup)],
         shuffle=False)
    for p, w in _kernels(reference).items():
        np.testing.assert_array_equal(w == 0, _kernels(resumed)[p] == 0)


def test_strip_pruning_leaves_plain_model(tiny_classifier, demo_data, tmp_path):
    model = prune_low_magnitude(tiny_classifier, ConstantSparsity(0.5, 0))
    _fit(model, demo_data, epochs=1, callbacks=[UpdatePruningStep()])
    zeros = {p: w == 0 for p, w in _kernels(model).items()}
    model = strip_pruning(model)
    assert all(r.variable.constraint is None for r in find_kernels(model))
    model.save(tmp_path / "stripped.keras")
    _fit(model, demo_data, epochs=1)  # no longer pruned: free to regrow
    regrown = sum(((w != 0) & zeros[p]).sum() for p, w in _kernels(model).items())
    assert regrown > 0
    with pytest.raises(ValueError, match="is not being pruned"):
        get_pruning(model)


def test_pruning_summaries_and_logged_sparsity(tiny_classifier, demo_data, tmp_path):
    model = prune_low_magnitude(tiny_classifier, ConstantSparsity(0.5, 0))
    history = _fit(model, demo_data, epochs=1,
                   callbacks=[UpdatePruningStep(), PruningSummaries(str(tmp_path / "logs"))])
    assert history.history["sparsity"] == [pytest.approx(0.5)]
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))


def test_bad_input_errors(tiny_classifier):
    with pytest.raises(ValueError, match="matches no kernel"):
        prune_low_magnitude(tiny_classifier, policy=PruningPolicy(pattern="no_such_layer"))
    with pytest.raises(ValueError, match="0 < N < M"):
        prune_low_magnitude(tiny_classifier, sparsity_m_by_n=(4, 4))
    with pytest.raises(TypeError, match="must be a tfbertopt PruningSchedule"):
        prune_low_magnitude(tiny_classifier, pruning_schedule=0.5)
    from tfbertopt.kernels import UnsupportedModelError

    with pytest.raises(UnsupportedModelError):
        prune_low_magnitude(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    model = prune_low_magnitude(tiny_classifier)
    with pytest.raises(ValueError, match="already being pruned"):
        prune_low_magnitude(model)
    fresh = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    fresh.compile("adam", "mse")
    with pytest.raises(ValueError, match="is not being pruned"):
        fresh.fit(np.ones((4, 3)), np.ones((4, 2)), callbacks=[UpdatePruningStep()], verbose=0)


def test_nan_weights_stop_pruning_with_a_clear_error(tiny_classifier):
    model = prune_low_magnitude(tiny_classifier, ConstantSparsity(0.5, 0))
    ref = get_pruning(model).refs[0]
    w = keras.ops.convert_to_numpy(ref.variable).copy()
    w.flat[0] = np.nan
    ref.variable.assign(w)
    with pytest.raises(ValueError, match="NaN/Inf"):
        get_pruning(model).update(0)
