"""Run an exported .tflite with ai-edge-litert on real examples and compare it with the Keras model.

A float export must match Keras logits to `max_logit_diff` (1e-4 by default); a quantized one must give the same
predicted label on at least `min_agreement` of the examples (99.5% by default). `VerificationReport.passed` says
whether it did; `verify_litert(..., raise_on_failure=True)` raises `VerificationError` instead.

Example:

>>> import os, tempfile
>>> from tfbertopt.data.demo import demo_examples, demo_vocabulary
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.export.litert import export_litert
>>> from tfbertopt.export.verify import verify_litert
>>> clf = tiny_bert_classifier(demo_vocabulary(), sequence_length=16)
>>> path = export_litert(clf, os.path.join(tempfile.mkdtemp(), "m.tflite"), sequence_length=16).path
>>> verify_litert(path, clf, demo_examples("dev", 20)).passed
True
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from tfbertopt import metrics as metrics_lib
from tfbertopt.data.pipeline import encode
from tfbertopt.evaluation import predict_logits, predictions_from_logits

logger = logging.getLogger(__name__)


class VerificationError(AssertionError):
    """The exported model disagrees with the Keras model beyond the allowed tolerance."""


@dataclasses.dataclass
class VerificationReport:
    n: int
    max_logit_diff: float
    mean_logit_diff: float
    label_agreement: float
    keras_score: float
    tflite_score: float
    metric: str
    criterion: str
    passed: bool
    nan_outputs: int = 0

    def summary(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        return (f"{verdict} ({self.criterion}): n={self.n} max|dlogit|={self.max_logit_diff:.2e} "
                f"agreement={self.label_agreement:.4f} {self.metric} keras={self.keras_score:.4f} "
                f"tflite={self.tflite_score:.4f}")


def run_litert(path, features: dict[str, np.ndarray], num_threads: int = 2, output: str = "logits",
               progress_every: int = 0) -> np.ndarray:
    """Outputs of the .tflite's serving signature, one example at a time when its batch is fixed at 1."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    runner = interpreter.get_signature_runner("serving_default")
    details = runner.get_input_details()
    names = list(details)
    fixed = tuple(details[names[0]]["shape"])
    n = len(features["token_ids"])
    outputs = []
    if fixed[0] == 1 and len(fixed) == 2 and fixed[1] > 0:
        length = int(fixed[1])
        for i in range(n):
            x = {k: _fit_length(features[k][i:i + 1], length) for k in names}
            outputs.append(runner(**x)[output])
            if progress_every and (i + 1) % progress_every == 0:
                logger.info("litert %d/%d", i + 1, n)
    else:
        for i in range(n):
            width = max(1, int(features["padding_mask"][i].sum()))
            x = {k: features[k][i:i + 1, :width] for k in names}
            interpreter_resize = {k: v.shape for k, v in x.items()}
            for k, shape in interpreter_resize.items():
                interpreter.resize_tensor_input(details[k]["index"], shape)
            interpreter.allocate_tensors()
            runner = interpreter.get_signature_runner("serving_default")
            outputs.append(runner(**x)[output])
    return np.concatenate(outputs).astype(np.float32)


def _fit_length(x: np.ndarray, length: int) -> np.ndarray:
    if x.shape[1] >= length:
        return x[:, :length]
    return np.pad(x, ((0, 0), (0, length - x.shape[1])))


def verify_litert(
    path,
    model,
    examples,
    quantized: bool | None = None,
    max_logit_diff: float = 1e-4,
    min_agreement: float = 0.995,
    features: dict | None = None,
    keras_logits: np.ndarray | None = None,
    raise_on_failure: bool = False,
) -> VerificationReport:
    """Compares the .tflite at `path` with `model` on `examples` (GLUE `Examples`).

    Args:
      quantized: use the label-agreement criterion (default: guessed from the file name containing "int8",
        "dynamic", "float16", "16x8" or "int4"; pass it explicitly when names differ).
      features / keras_logits: pre-computed tokens and Keras logits, to verify several files against one model.
    """
    if quantized is None:
        quantized = any(tag in str(path) for tag in ("int8", "dynamic", "float16", "16x8", "int4"))
    task = examples.task
    if features is None:
        features = encode(examples.texts, model.preprocessor)
    if keras_logits is None:
        keras_logits = predict_logits(model, features)
    tflite_logits = run_litert(path, features, progress_every=200)
    nan = int(np.isnan(tflite_logits).any(axis=-1).sum())
    diff = np.abs(np.nan_to_num(tflite_logits, nan=np.inf) - keras_logits)
    keras_pred = predictions_from_logits(task, keras_logits)
    tflite_pred = predictions_from_logits(task, np.nan_to_num(tflite_logits, nan=0.0))
    if task.is_regression:
        agreement = float(np.mean(np.abs(keras_pred - tflite_pred) <= 0.1))
    else:
        agreement = float(np.mean(keras_pred == tflite_pred))
    criterion = f"label agreement >= {min_agreement}" if quantized else f"max |logit diff| <= {max_logit_diff}"
    passed = nan == 0 and (agreement >= min_agreement if quantized else float(diff.max()) <= max_logit_diff)
    report = VerificationReport(
        n=len(keras_logits),
        max_logit_diff=float(diff.max()),
        mean_logit_diff=float(diff[np.isfinite(diff)].mean()) if np.isfinite(diff).any() else float("inf"),
        label_agreement=agreement,
        keras_score=metrics_lib.primary_score(task, examples.labels, keras_pred),
        tflite_score=metrics_lib.primary_score(task, examples.labels, tflite_pred),
        metric=task.metric,
        criterion=criterion,
        passed=passed,
        nan_outputs=nan,
    )
    logger.info("verify %s: %s", path, report.summary())
    if raise_on_failure and not passed:
        raise VerificationError(f"{path}: {report.summary()}" + (f"; {nan} outputs are NaN" if nan else ""))
    return report
