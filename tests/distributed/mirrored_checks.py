"""Every MirroredStrategy check, run in ONE fresh process: two logical CPU devices must be configured before
TensorFlow starts, so these cannot run in the pytest process. Prints one `RESULT {"check": name, ...}` line per check
(its result, or the traceback of its failure); `tests/distributed/conftest.py` runs it once and the tests assert.

Each check trains the same tiny models under `MirroredStrategy(["/cpu:0", "/cpu:1"])` and, where the comparison is
the point, on the default (single-device) strategy, and returns what the tests compare. The models have one
encoder layer: what is mirrored (masks, ranges, projections) is the same per layer, and each layer costs tracing
time once per replica.

    python tests/distributed/mirrored_checks.py [check ...]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfbertopt.data.demo import demo_examples, demo_vocabulary  # noqa: E402
from tfbertopt.data.pipeline import encode, make_dataset, without_preprocessor  # noqa: E402
from tfbertopt.distillation import DistillationConfig, Distiller  # noqa: E402
from tfbertopt.models import tiny_bert_classifier  # noqa: E402
from tfbertopt.pruning import PolynomialDecay, PruningPolicy, UpdatePruningStep, prune_low_magnitude  # noqa: E402
from tfbertopt.quantization import activation_ranges, quantize_model  # noqa: E402
from tfbertopt.train import finetune, predict_logits  # noqa: E402

CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


# One strategy for every check: a second MirroredStrategy in the same process breaks its collective reductions.
MIRRORED = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert MIRRORED.num_replicas_in_sync == 2


def build(seed, layers, width, dropout=0.0):
    return tiny_bert_classifier(demo_vocabulary(), num_layers=layers, hidden_dim=width, num_heads=2,
                                intermediate_dim=2 * width, sequence_length=16, seed=seed, dropout=dropout)


def zeros_and_sizes(model):
    kernels = {r.path: np.asarray(r.variable) for r in PruningPolicy().select(model)}
    return {"zeros": {p: int((w == 0).sum()) for p, w in kernels.items()},
            "sizes": {p: int(w.size) for p, w in kernels.items()}}


@check
def pruning():
    """GMP inside `fit` with the model built in the scope and pruned outside it (the masks must still be mirrored)."""
    train = demo_examples("train", 256)

    def run(strategy):
        with strategy.scope():
            clf = build(1, 1, 32, dropout=0.1)
        clf = prune_low_magnitude(clf, PolynomialDecay(0.0, 0.7, 0, 8, frequency=2))
        with strategy.scope():
            clf.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ds = make_dataset(encode(train.texts, clf.preprocessor), train.labels, 32, shuffle=True, sort_window=1,
                          repeat_epochs=2)
        with without_preprocessor(clf):
            clf.fit(ds, epochs=2, steps_per_epoch=8, callbacks=[UpdatePruningStep()], verbose=0)
        return zeros_and_sizes(clf)

    return {"mirrored": run(MIRRORED), "single": run(tf.distribute.get_strategy())}


@check
def distiller():
    """A Distiller (hard labels + logits KL + hidden MSE through a learned projection), mirrored vs single."""
    train = demo_examples("train", 128)

    def run(strategy):
        with strategy.scope():
            teacher = build(0, 1, 32)
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

    return {"mirrored": run(MIRRORED), "single": run(tf.distribute.get_strategy())}


@check
def guided_pruning():
    """Distillation-guided GMP: `finetune(student, teacher=..., callbacks=[UpdatePruningStep()])` in the scope."""
    train = demo_examples("train", 128)
    with MIRRORED.scope():
        teacher = build(0, 1, 32)
        teacher.trainable = False
        student = prune_low_magnitude(build(1, 1, 16), PolynomialDecay(0.0, 0.75, 0, 6, frequency=2))
        history = finetune(student, train, teacher=teacher, epochs=2, batch_size=32, max_steps=4,
                           learning_rate=1e-3, callbacks=[UpdatePruningStep()], verbose=0,
                           distillation={"hard_label_weight": 0.5, "logits": "kl", "logits_weight": 0.5})
    return {**zeros_and_sizes(student), "sparsity": [float(s) for s in history.history["sparsity"]],
            "terms": sorted(history.history)}


@check
def qat():
    """QAT: calibrated, then trained; ranges are mirrored variables updated in replica context."""
    train, dev = demo_examples("train", 256), demo_examples("dev", 32)

    def run(strategy):
        with strategy.scope():
            clf = build(1, 1, 32)
            model = quantize_model(clf, calibration=train, calibration_steps=32)
            calibrated = activation_ranges(model)
            model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ds = make_dataset(encode(train.texts, model.preprocessor), train.labels, 32, shuffle=False, sort_window=1)
        with without_preprocessor(model):
            model.fit(ds, epochs=1, steps_per_epoch=6, verbose=0)
        logits = predict_logits(model, encode(dev.texts, model.preprocessor))
        return {"calibrated": {k: [float(v) for v in r] for k, r in calibrated.items()},
                "ranges": {k: [float(v) for v in r] for k, r in activation_ranges(model).items()},
                "logits": np.asarray(logits).tolist()}

    return {"mirrored": run(MIRRORED), "single": run(tf.distribute.get_strategy())}


@check
def token_mean():
    """The hidden-state MSE of a batch whose two halves hold different numbers of real tokens: one process, and the
    two replicas' losses as Keras sums them (each divided by the replica count)."""
    from tfbertopt.distillation.losses import hidden_mse

    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(4, 6, 3)).astype("float32"), rng.normal(size=(4, 6, 3)).astype("float32")
    mask = np.array([[1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]], "float32")

    def halves(context):
        i = 2 * context.replica_id_in_sync_group
        return tf.constant(s[i:i + 2]), tf.constant(t[i:i + 2]), tf.constant(mask[i:i + 2])

    values = MIRRORED.experimental_distribute_values_from_function(halves)
    per_replica = MIRRORED.run(lambda a, b, m: hidden_mse(a, b, m) / 2.0, args=values)
    return {"single": float(hidden_mse(s, t, mask)),
            "mirrored": float(MIRRORED.reduce("SUM", per_replica, axis=None))}


def main(names):
    for name in names or list(CHECKS):
        try:
            out = {"result": CHECKS[name]()}
        except Exception:  # reported per check; the other checks still run
            out = {"error": traceback.format_exc()[-4000:]}
        print("RESULT " + json.dumps({"check": name, **out}), flush=True)
        keras.backend.clear_session()


if __name__ == "__main__":
    main(sys.argv[1:])
