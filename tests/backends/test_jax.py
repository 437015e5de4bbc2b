"""Training-time pieces are backend-neutral: pruning, the Distiller, factorized layers and QAT train under
KERAS_BACKEND=jax (in a subprocess: the backend is fixed when Keras is first imported). Export stays TensorFlow."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax", reason="jax is part of the test extra: pip install -e '.[test]'")

SCRIPT = textwrap.dedent('''
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    import numpy as np
    from tfbertopt.data.demo import demo_examples, demo_vocabulary
    from tfbertopt.data.pipeline import encode
    from tfbertopt.distillation import DistillationConfig, kl_with_temperature
    from tfbertopt.factorization import factorize
    from tfbertopt.models import tiny_bert_classifier
    from tfbertopt.pruning import ConstantSparsity, PruningPolicy, UpdatePruningStep, prune_low_magnitude
    from tfbertopt.train import finetune, predict_logits

    train, dev = demo_examples("train", 256), demo_examples("dev", 64)

    def tiny(**kw):
        return tiny_bert_classifier(demo_vocabulary(), hidden_dim=32, intermediate_dim=64, sequence_length=16, **kw)

    # Pruning: exact sparsity after training, masks applied inside the jitted JAX train step.
    teacher = prune_low_magnitude(tiny(num_layers=2, seed=1), ConstantSparsity(0.5, 0, frequency=1))
    finetune(teacher, train, epochs=2, batch_size=16, learning_rate=3e-3, length_grouping=1,
             callbacks=[UpdatePruningStep()], verbose=0)
    for ref in PruningPolicy().select(teacher):
        w = np.asarray(ref.variable)
        assert (w == 0).sum() == round(0.5 * w.size), ref.path
    print("pruning ok")

    # Distillation (logits + hidden states through a projection) into a narrower, factorized student.
    student = factorize(tiny(num_layers=1, seed=2), rank=8, roles=["ffn"])
    features = encode(dev.texts, student.preprocessor)

    def kl():
        return float(kl_with_temperature(predict_logits(student, features), predict_logits(teacher, features), 1.0))

    before = kl()
    history = finetune(student, train, epochs=2, batch_size=16, learning_rate=3e-3, length_grouping=1, verbose=0,
                       teacher=teacher, distillation=DistillationConfig(
                           hard_label_weight=0.0, logits="kl", logits_weight=1.0, hidden="mse", hidden_weight=1.0))
    assert "kd_hidden_loss" in history.history
    assert kl() < before, (kl(), before)
    print("distillation ok", before, kl())

    # Quantization-aware training: the moving-average ranges update inside the jitted JAX train step.
    from tfbertopt.quantization import activation_ranges, quantize_model

    qat = quantize_model(tiny(num_layers=2, seed=3), calibration=train, calibration_steps=32)
    calibrated = activation_ranges(qat)
    history = finetune(qat, train.take(128), epochs=1, batch_size=16, learning_rate=3e-3, length_grouping=1,
                       verbose=0)
    trained = activation_ranges(qat)
    assert set(trained) == set(calibrated), sorted(set(trained) ^ set(calibrated))
    assert len(trained) == 2 * 14 + 4, len(trained)
    assert all(np.isfinite(v).all() for v in trained.values())
    assert sum(trained[k] != calibrated[k] for k in trained) > len(trained) // 2   # the EMA ran in the jitted step
    assert np.isfinite(history.history["loss"][-1])
    print("qat ok")
''')


def test_pruning_distillation_factorized_layers_and_qat_train_on_jax():
    # XLA's CPU compiler without its backend optimisations: the tiny models' compile time is most of this test, and
    # what is checked (masks, ranges and losses in the jitted step) does not depend on how well the code is optimised.
    flags = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip())
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert "pruning ok" in result.stdout and "distillation ok" in result.stdout and "qat ok" in result.stdout

