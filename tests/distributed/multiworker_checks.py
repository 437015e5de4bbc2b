"""Multi-worker checks: one process of a localhost cluster (its TF_CONFIG set by `cluster.py`), or, without TF_CONFIG,
the single-process reference. Runs the named checks in order and, per check, writes the trained variables to
`OUT/<check>_<tag>.npz` (tag: w0, w1, ... for the workers, single for the reference) and prints one
`RESULT {"check": name, "tag": tag, ...}` line (or the traceback of its failure); `test_multiworker.py` compares.

Every method trains the same tiny models (one encoder layer, width 16; the teacher width 32) on the same global
batches: 48 examples in batches of 12, so 2 or 3 workers each train on equal slices of every batch.

    TF_CONFIG=... python tests/distributed/multiworker_checks.py OUT check [check ...]

`KILL_AT=call:epoch:batch` (0-based; call counts the recipe's finetune calls) in a worker's environment makes that
worker SIGKILL itself there (the fault test).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tfbertopt.distribute import make_strategy, read_cluster  # noqa: E402

# MultiWorkerMirroredStrategy first, before any other TensorFlow op.
STRATEGY = make_strategy("multi_worker") if os.environ.get("TF_CONFIG") else None

import dataclasses  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfbertopt.stages.finetune  # noqa: E402
from tfbertopt.data.demo import demo_examples, demo_vocabulary  # noqa: E402
from tfbertopt.data.pipeline import encode, lengths, make_dataset  # noqa: E402
from tfbertopt.distillation import TeacherCache, cache_teacher_outputs  # noqa: E402
from tfbertopt.distribute import distribute_batches, local_path  # noqa: E402
from tfbertopt.models import tiny_bert_classifier  # noqa: E402
from tfbertopt.pruning import PolynomialDecay, UpdatePruningStep, get_pruning, prune_low_magnitude  # noqa: E402
from tfbertopt.quantization import activation_ranges, quantize_model  # noqa: E402
from tfbertopt.recipe import parse_recipe  # noqa: E402
from tfbertopt.runner import run_recipe  # noqa: E402
from tfbertopt.train import finetune  # noqa: E402

TAG = f"w{read_cluster().task[1]}" if STRATEGY else "single"
N, BATCH, EPOCHS, SEED = 48, 12, 2, 3
keras.config.disable_traceback_filtering()     # whole tracebacks in the RESULT lines
STEPS = N // BATCH
CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def build(seed, width=16):
    return tiny_bert_classifier(demo_vocabulary(), num_layers=1, hidden_dim=width, num_heads=2,
                                intermediate_dim=2 * width, sequence_length=16, seed=seed, dropout=0.0)


def _train_examples():
    """48 demo sentences, 24 of 6 tokens and 24 of 7 ([CLS] and [SEP] included): batches are padded per batch (the
    6-token rows), yet nearly every batch is 7 wide, so Keras traces each train step once, not twice."""
    pool = demo_examples("train", 200)
    lens = lengths(encode(pool.texts, build(0).preprocessor))
    pick = np.sort(np.concatenate([np.flatnonzero(lens == 6)[:N // 2], np.flatnonzero(lens == 7)[:N // 2]]))
    return dataclasses.replace(pool, texts=[pool.texts[i] for i in pick], labels=pool.labels[pick])


TRAIN = _train_examples()


def weights(model):
    return {w.path: np.asarray(w) for w in model.weights}


class EpochTimes(keras.callbacks.Callback):
    """Seconds of each epoch (the first includes tracing)."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def train(model, **kwargs):
    timer = EpochTimes()
    kwargs["callbacks"] = kwargs.get("callbacks", []) + [timer]
    finetune(model, TRAIN, epochs=EPOCHS, batch_size=BATCH, learning_rate=1e-3,
             length_grouping=1, seed=SEED, verbose=0, **kwargs)
    return timer.seconds


DISTILLATION = {"hard_label_weight": 0.5, "logits": "kl", "logits_weight": 0.5, "temperature": 2.0,
                "hidden": "mse", "hidden_weight": 1.0}



@check
def distill_live():
    teacher, student = build(0, width=32), build(1)
    teacher.trainable = False
    seconds = train(student, teacher=teacher, distillation=DISTILLATION)
    return weights(student), {"epoch_seconds": seconds}


@check
def distill_cache():
    teacher, student = build(0, width=32), build(1)
    features = encode(TRAIN.texts, teacher.preprocessor)
    path = local_path(os.path.join(OUT, f"teacher_cache_{TAG}"))    # each worker its own copy: no waiting
    cache = cache_teacher_outputs(teacher, features, path, hidden_layers=[0], overwrite=True, verbose=0)
    seconds = train(student, teacher=TeacherCache(cache.path), distillation=DISTILLATION)
    return weights(student), {"epoch_seconds": seconds}


@check
def gmp():
    model = prune_low_magnitude(build(1), PolynomialDecay(0.0, 0.7, 0, 6, frequency=2))
    seconds = train(model, callbacks=[UpdatePruningStep()])
    masks = {f"mask:{ref.path}": np.asarray(m) for ref, m in zip(get_pruning(model).refs, get_pruning(model).masks)}
    return {**weights(model), **masks}, {"epoch_seconds": seconds,
                                         "sparsity": get_pruning(model).overall_sparsity()}


@check
def qat():
    model = quantize_model(build(1), calibration=TRAIN, calibration_steps=24)
    seconds = train(model)
    ranges = {f"range:{k}": np.asarray(v) for k, v in activation_ranges(model).items()}
    return {**weights(model), **ranges}, {"epoch_seconds": seconds, "ranges": len(ranges)}


def recipe(output_dir):
    model_path = os.path.join(OUT, f"recipe_model_{TAG}.keras")     # the same model, one file per process
    if not os.path.exists(model_path):
        build(2).save(model_path)
    return parse_recipe({   # validated as a recipe file would be, so every stage option has its default
        "name": "multiworker", "model": model_path, "task": "sst2", "sequence_length": 16, "seed": SEED,
        "data": {"source": "demo", "demo_train_examples": N, "on_bad_rows": "raise"}, "output_dir": output_dir,
        "stages": [{"trim_vocabulary": {}},
                   {"finetune": {"epochs": 3, "batch_size": BATCH, "learning_rate": 1e-3, "weight_decay": 0.01,
                                 "warmup_fraction": 0.1, "length_grouping": 2}}],
        "distribute": {"strategy": "multi_worker" if STRATEGY else "none"}})


class KillAt(keras.callbacks.Callback):
    """SIGKILLs this process at (finetune call, epoch, batch), 0-based: a worker lost mid-epoch."""

    stage = -1

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (KillAt.stage, self.epoch, batch) == self.at:
            print(f"KILLED at stage {KillAt.stage} epoch {self.epoch} batch {batch}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


def _finetune_with_kill(model, train, dev=None, callbacks=None, **kwargs):
    KillAt.stage += 1
    at = tuple(int(v) for v in os.environ["KILL_AT"].split(":"))
    return finetune(model, train, dev, callbacks=[*(callbacks or []), KillAt(at)], **kwargs)


@check
def recipe_finetune():
    """trim_vocabulary, then finetune (which resumes through BackupAndRestore), through the recipe runner."""
    if os.environ.get("KILL_AT"):
        tfbertopt.stages.finetune.finetune = _finetune_with_kill
    run = run_recipe(recipe(os.path.join(OUT, f"recipe_{'multi' if STRATEGY else 'single'}")))
    return weights(run.model), {"finished": sorted(run.state["finished"]), "write_dir": run.write_dir}


@check
def shard_counts():
    """Which examples each worker trains on, per epoch, read through the same distributed dataset finetune builds
    (the labels are the example indices)."""
    features = encode(TRAIN.texts, build(0).preprocessor)

    batches = make_dataset(features, np.arange(N), BATCH, shuffle=True, seed=SEED, repeat_epochs=EPOCHS,
                           sort_window=1)
    dataset = distribute_batches(batches, N, BATCH, STRATEGY)
    iterator = iter(STRATEGY.experimental_distribute_dataset(dataset) if STRATEGY else dataset)
    seen = []
    for _ in range(EPOCHS):
        ids = []
        for _ in range(STEPS):
            _, y = next(iterator)
            local = STRATEGY.experimental_local_results(y) if STRATEGY else [y]
            ids += [int(i) for part in local for i in np.asarray(part)]
        seen.append(ids)
    return {}, {"ids_per_epoch": seen}


@check
def unshardable():
    """Batches of 16 over 3 workers: the stage must refuse before training."""
    try:
        finetune(build(1), TRAIN, epochs=1, batch_size=16, verbose=0)
    except ValueError as e:
        return {}, {"error_message": str(e)}
    return {}, {"error_message": None}


def run_checks(names):
    for name in names:
        started = time.perf_counter()
        try:
            if STRATEGY is not None:
                with STRATEGY.scope():
                    arrays, info = CHECKS[name]()
            else:
                arrays, info = CHECKS[name]()
            np.savez(os.path.join(OUT, f"{name}_{TAG}.npz"), **arrays)
            out = {"result": info}
        except Exception:  # reported per check; the other checks still run
            out = {"error": traceback.format_exc()[-4000:]}
        out["seconds"] = round(time.perf_counter() - started, 2)
        print("RESULT " + json.dumps({"check": name, "tag": TAG, **out}), flush=True)


if __name__ == "__main__":
    OUT = sys.argv[1]
    run_checks(sys.argv[2:])
