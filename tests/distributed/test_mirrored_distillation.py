"""Distillation under tf.distribute.MirroredStrategy on two logical CPU devices (subprocesses: logical devices must
be configured before TensorFlow starts).

- A Distiller (logits KL + hidden MSE through a learned projection + hard labels) trained N steps under the
  strategy ends where the single-device run ends (same seed, dropout 0), and logs the same loss terms. This failed
  before `Distiller.compute_loss` followed Keras' per-replica loss scaling: the KD terms were counted
  num_replicas times in the gradients and in the logged `loss`.
- Distillation-guided pruning (`finetune(student, ..., teacher=..., callbacks=[UpdatePruningStep()])` inside the
  strategy's scope) reaches exactly the scheduled sparsity on every pruned kernel.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np

PRELUDE = textwrap.dedent('''
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import json
    import keras
    import numpy as np
    from tfbertopt.data.demo import demo_examples, demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    train = demo_examples("train", 128)
    MIRRORED = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert MIRRORED.num_replicas_in_sync == 2

    def build(seed, layers, width):
        return tiny_bert_classifier(demo_vocabulary(), num_layers=layers, hidden_dim=width, num_heads=2,
                                    intermediate_dim=2 * width, sequence_length=16, seed=seed, dropout=0.0)
''')

DISTILLER = PRELUDE + textwrap.dedent('''
    from tfbertopt.data.pipeline import encode, make_dataset
    from tfbertopt.distillation import DistillationConfig, Distiller

    def run(strategy):
        with strategy.scope():
            teacher = build(0, 2, 32)
            teacher.trainable = False
            student = build(1, 1, 16)
            keras.utils.set_random_seed(2)
            config = DistillationConfig(hard_label_weight=0.2, logits="kl", logits_weight=1.0, temperature=2.0,
                                        hidden="mse", hidden_weight=1.0)
            distiller = Distiller(student, teacher, config)
            assert list(distiller.projections) == ["teacher0_layer0"]   # width 16 -> 32
            distiller.compile(optimizer=keras.optimizers.SGD(0.05))
        features = encode(train.texts, teacher.preprocessor)
        ds = make_dataset(features, train.labels, 32, shuffle=False, repeat_epochs=2)
        history = distiller.fit(ds, epochs=1, steps_per_epoch=6, shuffle=False, verbose=0)
        x = {k: v[:32] for k, v in features.items()}
        return {"logits": np.asarray(student(x, training=False)).tolist(),
                "projection": np.asarray(distiller.projections["teacher0_layer0"].kernel).tolist(),
                "student": float(sum(np.abs(np.asarray(w)).sum() for w in student.weights)),
                "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}

    print("RESULT " + json.dumps({"mirrored": run(MIRRORED), "single": run(tf.distribute.get_strategy())}))
''')

PRUNING = PRELUDE + textwrap.dedent('''
    from tfbertopt.pruning import PolynomialDecay, PruningPolicy, UpdatePruningStep, prune_low_magnitude
    from tfbertopt.train import finetune

    with MIRRORED.scope():
        teacher = build(0, 2, 32)
        teacher.trainable = False
        student = prune_low_magnitude(build(1, 2, 16), PolynomialDecay(0.0, 0.75, 0, 6, frequency=2))
        history = finetune(student, train, teacher=teacher, epochs=2, batch_size=32, max_steps=4,
                           learning_rate=1e-3, callbacks=[UpdatePruningStep()], verbose=0,
                           distillation={"hard_label_weight": 0.5, "logits": "kl", "logits_weight": 0.5})
    kernels = {r.path: np.asarray(r.variable) for r in PruningPolicy().select(student)}
    print("RESULT " + json.dumps({"zeros": {p: int((w == 0).sum()) for p, w in kernels.items()},
                                  "sizes": {p: int(w.size) for p, w in kernels.items()},
                                  "sparsity": [float(s) for s in history.history["sparsity"]],
                                  "terms": sorted(history.history)}))
''')


def _run(script: str) -> dict:
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_distiller_under_mirrored_strategy_matches_single_device():
    out = _run(DISTILLER)
    mirrored, single = out["mirrored"], out["single"]
    assert sorted(mirrored["history"]) == ["hard_loss", "kd_hidden_loss", "kd_logits_loss", "loss"]
    for key, values in single["history"].items():
        np.testing.assert_allclose(mirrored["history"][key], values, rtol=1e-4, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(mirrored["logits"], single["logits"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mirrored["projection"], single["projection"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(mirrored["student"], single["student"], rtol=1e-5)


def test_distillation_guided_pruning_under_mirrored_strategy_reaches_exact_sparsity():
    out = _run(PRUNING)
    assert len(out["zeros"]) == 12   # 2 layers x (q, k, v, attention output, FFN in, FFN out)
    for path, zeros in out["zeros"].items():
        assert zeros == round(0.75 * out["sizes"][path]), path
    assert out["sparsity"][-1] == 0.75
    assert {"hard_loss", "kd_logits_loss", "sparsity"} <= set(out["terms"])
