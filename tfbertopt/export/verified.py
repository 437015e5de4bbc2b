"""Export that refuses to ship a model which disagrees with Keras.

`export_verified` writes the .tflite to a temporary name, verifies it on real examples, and only then moves it into
place; a failed verification raises `VerificationError` and leaves no file, unless `force=True`, in which case the
file is written and its report says FAILED. Every export gets a `<path>.json` report beside it: versions of
tfbertopt, TensorFlow, Keras, keras-hub and LiteRT, the ops in the file, and the verification result.

Example:

>>> import os, tempfile
>>> from tfbertopt.data.demo import demo_examples, demo_vocabulary
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.export.verified import export_verified
>>> clf = tiny_bert_classifier(demo_vocabulary(), sequence_length=16)
>>> path = os.path.join(tempfile.mkdtemp(), "m.tflite")
>>> result, report = export_verified(clf, path, demo_examples("dev", 16), sequence_length=16)
>>> report.passed, os.path.exists(path + ".json")
(True, True)
"""

from __future__ import annotations

import dataclasses
import json
import os

from tfbertopt.export.litert import export_litert
from tfbertopt.export.mixed_precision import export_mixed_precision
from tfbertopt.export.verify import VerificationError, verify_litert



def versions() -> dict:
    """Versions of everything that shapes a result: recorded in every report."""
    from importlib import metadata

    out = {}
    for name in ("tfbertopt", "tensorflow", "keras", "keras-hub", "ai-edge-litert", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def export_verified(model, path, examples, quantization: str = "float32", sequence_length: int | None = 128,
                    force: bool = False, features=None, keras_logits=None, calibration=None,
                    calibration_steps: int = 100, mixed_precision: dict | None = None, **tolerances):
    """Exports, verifies against Keras on `examples`, and writes the file only if it passed (or `force`).

    Returns (ExportResult, VerificationReport). `calibration` / `calibration_steps`: as `export_litert` (needed by
    "int8", "16x8", "int8-matmul" and "mixed"). `quantization="mixed"`: Q-BERT-style mixed precision
    (`tfbertopt.export.mixed_precision.export_mixed_precision`) with `mixed_precision` = its keyword arguments
    (a budget such as `max_float_ops`, and `holdout` examples to select on; never the verification examples).
    `tolerances`: `max_logit_diff`, `min_agreement`.
    """

    path = str(path)
    staging = path + ".unverified"
    if quantization == "mixed":
        mixed = export_mixed_precision(model, staging, sequence_length, calibration=calibration,
                                       calibration_steps=calibration_steps, **(mixed_precision or {}))
        result = mixed.export
    else:
        result = export_litert(model, staging, quantization, sequence_length, calibration=calibration,
                               calibration_steps=calibration_steps)
    report = verify_litert(staging, model, examples, quantized=quantization != "float32", features=features,
                           keras_logits=keras_logits, **tolerances)
    record = {
        "path": os.path.basename(path),
        "quantization": quantization,
        "sequence_length": sequence_length,
        "size_bytes": result.size_bytes,
        "ops": dict(result.ops),
        "float_ops": None if result.op_report is None else result.float_op_count,
        "verification": {**dataclasses.asdict(report), "examples": examples.source, "forced": force and not
                         report.passed},
        "versions": versions(),
    }
    if not report.passed and not force:
        os.remove(staging)
        raise VerificationError(f"refusing to write {path}: {report.summary()}"
                                + (f"; {report.nan_outputs} outputs are NaN" if report.nan_outputs else "")
                                + ". Pass force=True to write it anyway (the report will say FAILED).")
    os.replace(staging, path)
    result.path = path
    with open(path + ".json", "w") as f:
        json.dump(record, f, indent=2)
    return result, report
