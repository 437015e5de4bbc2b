"""Fine-tuning of keras-hub classifiers on GLUE tasks through plain `model.fit` (scoring: `tfbertopt.evaluation`,
whose functions this module also offers).

Example:

>>> from tfbertopt.data.demo import demo_examples, demo_vocabulary
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.train import finetune, evaluate
>>> train, dev = demo_examples("train", 64), demo_examples("dev", 32)
>>> clf = tiny_bert_classifier(demo_vocabulary())
>>> history = finetune(clf, train, dev, epochs=1, batch_size=16, verbose=0)
>>> sorted(evaluate(clf, dev))
['accuracy']
"""

from __future__ import annotations

import json
import logging
import os
import time

import keras

from tfbertopt import metrics as metrics_lib
from tfbertopt.backup import Backup, EpochWeights, finished_epochs  # noqa: F401  (also importable from here)
from tfbertopt.data.pipeline import encode, make_dataset, steps_per_epoch, without_preprocessor
from tfbertopt.distribute import (chief_path, distribute_batches, local_path, multi_worker_fit,
                                  write_json_atomically)
from tfbertopt.distillation import Distiller
# Scoring lives in tfbertopt.evaluation; these names stay importable from here, where fine-tuning code looks.
from tfbertopt.evaluation import evaluate, loss_for, predict_logits, predictions_from_logits  # noqa: F401


logger = logging.getLogger(__name__)


def warmup_linear_decay(learning_rate: float, total_steps: int, warmup_fraction: float = 0.1):
    """BERT's schedule: linear warm-up to `learning_rate`, then linear decay to 0."""
    warmup = max(1, int(total_steps * warmup_fraction))
    decay = keras.optimizers.schedules.PolynomialDecay(learning_rate, max(1, total_steps - warmup), 0.0)
    return _Warmup(learning_rate, warmup, decay)


@keras.saving.register_keras_serializable(package="tfbertopt")
class _Warmup(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, peak, warmup_steps, decay):
        self.peak, self.warmup_steps, self.decay = peak, warmup_steps, decay

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * step / self.warmup_steps
        return keras.ops.where(step < self.warmup_steps, warm, self.decay(step - self.warmup_steps))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "decay": keras.saving.serialize_keras_object(self.decay)}

    @classmethod
    def from_config(cls, config):
        config["decay"] = keras.saving.deserialize_keras_object(config["decay"])
        return cls(**config)


class StepProgress(keras.callbacks.Callback):
    """Prints a line every `every` steps (step, loss, seconds per step, time left): readable in log files, where
    Keras' progress bar is not."""

    def __init__(self, steps_per_epoch: int, epochs: int, every: int = 100):
        super().__init__()
        self.steps, self.epochs, self.every = steps_per_epoch, epochs, every

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.started = epoch, time.time()

    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1
        if done % self.every and done != self.steps:
            return
        per_step = (time.time() - self.started) / done
        left = per_step * ((self.steps - done) + self.steps * (self.epochs - self.epoch - 1))
        loss = (logs or {}).get("loss")
        print(f"epoch {self.epoch + 1}/{self.epochs} step {done}/{self.steps} loss {float(loss):.4f} "
              f"{per_step:.3f} s/step, ~{left / 60:.1f} min left", flush=True)


class DevMetrics(keras.callbacks.Callback):
    """Computes the GLUE metrics on the dev set after each epoch and logs them as `dev_<metric>`.

    `model` is the classifier to score (default: the model being fitted; a `Distiller` passes its student)."""

    def __init__(self, examples, features, batch_size: int = 64, verbose: int = 1, model=None):
        super().__init__()
        self.examples, self.features, self.batch_size, self.verbose = examples, features, batch_size, verbose
        self.scored = model

    def on_epoch_end(self, epoch, logs=None):
        logits = predict_logits(self.scored if self.scored is not None else self.model, self.features,
                                self.batch_size)
        scores = metrics_lib.compute_metrics(
            self.examples.task, self.examples.labels, predictions_from_logits(self.examples.task, logits))
        if logs is not None:
            logs.update({f"dev_{k}": v for k, v in scores.items()})
        logger.info("epoch %d dev %s", epoch + 1, scores)
        if self.verbose:
            print(f"epoch {epoch + 1}: dev " + ", ".join(f"{k}={v:.4f}" for k, v in scores.items()), flush=True)


class BestEpoch(keras.callbacks.Callback):
    """Restores, at the end of training, the weights of the epoch with the best `monitor` (higher is better; every
    GLUE headline metric is): Keras' `EarlyStopping(restore_best_weights=True)` without the stopping, and resumable.

    Place it after `DevMetrics` (which adds `monitor` to the epoch's logs). With `folder` (where `EpochWeights`
    writes `epoch_NN.weights.h5`) each epoch's score goes to `folder/dev_scores.json` and the best epoch is loaded
    from its file, so a run resumed by `Backup` still finds epochs trained before the stop; without it, the best
    weights are kept in memory.
    """

    def __init__(self, monitor: str, folder=None):
        super().__init__()
        self.monitor, self.folder = monitor, folder
        self.scores, self.best_weights = {}, None
        self.best_epoch = None

    def _scores_path(self):
        return os.path.join(chief_path(str(self.folder)), "dev_scores.json")

    def on_train_begin(self, logs=None):
        self.scores = {}
        if self.folder is not None and os.path.exists(self._scores_path()):
            with open(self._scores_path()) as f:
                self.scores = {int(k): v for k, v in json.load(f).items()}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.monitor not in logs:
            raise ValueError(f"BestEpoch: the epoch's logs have no '{self.monitor}'; give finetune a dev set "
                             f"(DevMetrics logs dev_<metric>)")
        score = float(logs[self.monitor])
        if all(score > v for v in self.scores.values()):
            self.best_weights = None if self.folder is not None else self.model.get_weights()
        self.scores[epoch + 1] = score
        if self.folder is not None:
            os.makedirs(local_path(str(self.folder)), exist_ok=True)
            write_json_atomically(self.scores, os.path.join(local_path(str(self.folder)), "dev_scores.json"))

    def on_train_end(self, logs=None):
        if not self.scores:
            return
        self.best_epoch = max(self.scores, key=lambda k: (self.scores[k], -k))   # the earliest of equal bests
        last = max(self.scores)
        if self.best_epoch == last:
            return
        if self.folder is not None:
            self.model.load_weights(os.path.join(chief_path(str(self.folder)),
                                                 f"epoch_{self.best_epoch:02d}.weights.h5"))
        else:
            self.model.set_weights(self.best_weights)
        logger.info("kept epoch %d (%s %.4f) instead of the last (%.4f)", self.best_epoch, self.monitor,
                    self.scores[self.best_epoch], self.scores[last])
        print(f"kept epoch {self.best_epoch} of {last}: {self.monitor}={self.scores[self.best_epoch]:.4f} "
              f"(last {self.scores[last]:.4f})", flush=True)


def build_training_state(model, dataset) -> None:
    """Creates a compiled model's optimizer and metric variables from one batch of `dataset` before `fit`.

    Without a distribution strategy Keras creates them inside the first trace of the train step, and TensorFlow
    then traces the step a second time (a `tf.function` whose first trace made variables is traced again); built
    beforehand, `fit` traces it once, which halves the start-up of a short fine-tuning run.
    """
    if model.optimizer is None or model.optimizer.built or getattr(model, "_distribute_strategy", None) is not None:
        return      # under a strategy, fit builds them itself, in the strategy's scope
    batch = next(iter(dataset.take(1)))
    model._symbolic_build(data_batch=batch)   # Keras' own build step, which fit runs only under a strategy


def finetune(
    model,
    train,
    dev=None,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    weight_decay: float = 0.01,
    warmup_fraction: float = 0.1,
    checkpoint_dir: str | os.PathLike | None = None,
    callbacks: list | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    length_grouping: int = 20,
    verbose: int | str = "auto",
    teacher=None,
    distillation=None,
    teacher_weights=None,
    keep: str = "last",
):
    """Fine-tunes a keras-hub classifier on GLUE `Examples` with AdamW and BERT's warm-up/linear-decay schedule.

    Tokenizes once with the model's own preprocessor; batches are length-grouped and padded per batch.
    With `checkpoint_dir`, weights are written after each epoch and `tfbertopt.backup.Backup` (Keras'
    BackupAndRestore, atomic and chief-only) resumes a stopped run at the epoch where it stopped. Inside a
    MultiWorkerMirroredStrategy scope each worker trains on its slice of every global batch of `batch_size`
    (`tfbertopt.distribute.distribute_batches`; its shard of `batch_size` examples must split evenly).
    `length_grouping` sorts examples by length inside windows of that many batches (1 = plain random batches):
    larger windows pad less but make batches more alike. Returns the Keras `History` (dev metrics logged as
    `dev_<name>`).

    With `teacher` (a classifier or a list), the model is trained as the student of a
    `tfbertopt.distillation.Distiller` with `distillation` (a `DistillationConfig` or its dict; default 0.5 hard
    labels + 0.5 KL at T=2) and `teacher_weights`; the same optimizer, schedule, batches and callbacks apply, and
    the history also logs every loss term (`hard_loss`, `kd_logits_loss`, ...).

    `keep="best"` ends with the weights of the epoch with the best dev headline metric (`BestEpoch`; needs `dev`)
    instead of the last epoch's; the history then has `kept_epoch`. Selecting on dev makes dev scores of the kept
    model optimistic by the selection; hold out a slice of the training data as `dev` where that matters.
    """
    if keep not in ("last", "best"):
        raise ValueError(f"keep must be 'last' or 'best', got {keep!r}")
    if keep == "best" and dev is None:
        raise ValueError("keep='best' chooses the epoch by its dev score; pass dev=...")
    task = train.task
    keras.utils.set_random_seed(seed)
    started = time.time()
    train_features = encode(train.texts, model.preprocessor)
    steps = steps_per_epoch(len(train), batch_size)
    if max_steps is not None:
        steps = min(steps, max_steps)
    total = steps * epochs
    logger.info("fine-tuning on %d %s examples, %d steps x %d epochs", len(train), task.name, steps, epochs)
    optimizer = keras.optimizers.AdamW(
        learning_rate=warmup_linear_decay(learning_rate, total, warmup_fraction),
        weight_decay=weight_decay,
        global_clipnorm=1.0,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    metrics = [] if task.is_regression else ["accuracy"]
    if teacher is not None:
        fit_model = Distiller(model, teacher, distillation, teacher_weights=teacher_weights)
    elif distillation is not None:
        raise ValueError("distillation options were given without a teacher; pass teacher=...")
    else:
        fit_model = model
    fit_model.compile(optimizer=optimizer, loss=loss_for(task), metrics=metrics)
    done = finished_epochs(os.path.join(str(checkpoint_dir), "backup")) if checkpoint_dir is not None else 0
    if done:
        logger.info("resuming after %d finished epochs in %s", done, checkpoint_dir)

    # After `done` epochs BackupAndRestore resumes at epoch `done`: the stream starts where that epoch began, so a
    # resumed run sees exactly the batches of an uninterrupted one.
    train_ds = make_dataset(train_features, train.labels, batch_size, shuffle=True, seed=seed,
                            repeat_epochs=epochs + 1, sort_window=length_grouping).skip(done * steps)
    train_ds = distribute_batches(train_ds, len(train), batch_size)
    cbs = list(callbacks or [])
    if verbose == 2:
        cbs.append(StepProgress(steps, epochs, every=max(1, min(200, steps // 10))))
    if dev is not None:
        cbs.append(DevMetrics(dev, encode(dev.texts, model.preprocessor), verbose=int(verbose != 0), model=model))
    if checkpoint_dir is not None:
        # Under multi-worker training only the chief writes checkpoint_dir; every worker restores from it.
        cbs.append(Backup(os.path.join(str(checkpoint_dir), "backup")))
        cbs.append(EpochWeights(checkpoint_dir))
    best = None
    if keep == "best":
        best = BestEpoch(f"dev_{task.metric}", checkpoint_dir)
        cbs.append(best)
    with without_preprocessor(model), multi_worker_fit(fit_model):
        build_training_state(fit_model, train_ds)
        history = fit_model.fit(train_ds, epochs=epochs, steps_per_epoch=steps, callbacks=cbs, verbose=verbose,
                            shuffle=False)  # batches are already shuffled by make_dataset
    history.history["train_seconds"] = [time.time() - started]
    if best is not None and best.best_epoch is not None:
        history.history["kept_epoch"] = [best.best_epoch]
    return history
