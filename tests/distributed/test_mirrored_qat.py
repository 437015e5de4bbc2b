"""Quantization-aware training under tf.distribute.MirroredStrategy on two logical CPU devices (subprocess: logical
devices must be configured before TensorFlow starts): activation ranges are mirrored variables updated in replica
context (averaged across replicas), weights train as on one device."""

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
    from tfbertopt.quantization import activation_ranges, quantize_model
    from tfbertopt.train import predict_logits

    train, dev = demo_examples("train", 256), demo_examples("dev", 32)

    def run(strategy):
        with strategy.scope():
            clf = tiny_bert_classifier(demo_vocabulary(), num_layers=2, hidden_dim=32, intermediate_dim=64,
                                       sequence_length=16, seed=1, dropout=0.0)
            qat = quantize_model(clf, calibration=train, calibration_steps=32)
            calibrated = activation_ranges(qat)
            qat.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ds = make_dataset(encode(train.texts, qat.preprocessor), train.labels, 32, shuffle=False, sort_window=1)
        with without_preprocessor(qat):
            qat.fit(ds, epochs=1, steps_per_epoch=6, verbose=0)
        return calibrated, activation_ranges(qat), predict_logits(qat, encode(dev.texts, qat.preprocessor))

    m_cal, m_ranges, m_logits = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    s_cal, s_ranges, s_logits = run(tf.distribute.get_strategy())
    assert m_cal == s_cal                                   # calibration runs outside replicas: identical
    assert set(m_ranges) == set(s_ranges) and any(m_ranges[k] != m_cal[k] for k in m_ranges)
    for k, (lo, hi) in m_ranges.items():
        slo, shi = s_ranges[k]
        width, swidth = hi - lo, shi - slo
        # Each replica sees half a batch, so its extremes (then averaged) are at most the full batch's.
        assert np.isfinite([lo, hi]).all() and 0.5 * swidth <= width <= 1.05 * swidth, (k, (lo, hi), (slo, shi))
    assert np.mean(m_logits.argmax(-1) == s_logits.argmax(-1)) >= 0.9
    assert np.abs(m_logits - s_logits).max() < 0.5
    print("mirrored qat ok")
''')


def test_qat_under_mirrored_strategy():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert "mirrored qat ok" in result.stdout
