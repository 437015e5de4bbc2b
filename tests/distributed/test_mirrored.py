"""Pruning under tf.distribute.MirroredStrategy on two logical CPU devices (in a subprocess: logical devices must be
configured before TensorFlow starts)."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from tfbertopt.data.demo import demo_examples, demo_vocabulary
    from tfbertopt.data.pipeline import encode, make_dataset, without_preprocessor
    from tfbertopt.models import tiny_bert_classifier
    from tfbertopt.pruning import PolynomialDecay, PruningPolicy, UpdatePruningStep, prune_low_magnitude

    def run(strategy):
        train = demo_examples("train", 256)
        with strategy.scope():
            clf = tiny_bert_classifier(demo_vocabulary(), num_layers=2, hidden_dim=32, intermediate_dim=64,
                                       sequence_length=16, seed=1)
        # Called outside the scope on purpose: masks must still be mirrored like the weights.
        clf = prune_low_magnitude(clf, PolynomialDecay(0.0, 0.7, 0, 8, frequency=2))
        with strategy.scope():
            clf.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ds = make_dataset(encode(train.texts, clf.preprocessor), train.labels, 32, shuffle=True, sort_window=1,
                          repeat_epochs=2)
        with without_preprocessor(clf):
            clf.fit(ds, epochs=2, steps_per_epoch=8, callbacks=[UpdatePruningStep()], verbose=0)
        return {r.path: np.asarray(r.variable) for r in PruningPolicy().select(clf)}

    mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    single = run(tf.distribute.get_strategy())
    for path, w in mirrored.items():
        assert (w == 0).sum() == round(0.7 * w.size), path
        assert (single[path] == 0).sum() == (w == 0).sum(), path
    print("OK", len(mirrored))
''')


def test_pruning_under_mirrored_strategy_matches_single_device_sparsity():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK 12" in result.stdout
