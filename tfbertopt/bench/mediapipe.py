"""MediaPipe Tasks' TextClassifier on raw strings, beside the LiteRT interpreter: what an app would get from a file.

`mediapipe_probabilities` runs the classifier (a file with `tfbertopt.export.metadata` written in it) on raw texts;
`mediapipe_agreement` writes that metadata into an exported file and compares MediaPipe's labels with the
interpreter's on the same dev examples (the file's own tokens, from the model's tokenizer). Single-sentence tasks
only: the TextClassifier takes one string. Needs mediapipe (`pip install 'tfbertopt[mediapipe]'`).

Example (with mediapipe installed):

>>> import os, tempfile
>>> from tfbertopt.data.demo import demo_examples
>>> from tfbertopt.export.litert import export_litert
>>> from tfbertopt.models import tiny_bert_classifier
>>> clf = tiny_bert_classifier(["good", "bad"], sequence_length=16)
>>> path = export_litert(clf, os.path.join(tempfile.mkdtemp(), "m_dynamic.tflite"), "dynamic", 16).path
>>> mediapipe_agreement(clf, path, demo_examples("dev", 8), ["negative", "positive"])["mediapipe_agreement"]
1.0
"""

from __future__ import annotations

import numpy as np

from tfbertopt.data.pipeline import encode
from tfbertopt.export.metadata import write_metadata
from tfbertopt.export.verify import run_litert

# Class names, in label id order, of the single-sentence GLUE tasks a TextClassifier can be given.
TASK_LABELS = {"sst2": ["negative", "positive"], "cola": ["unacceptable", "acceptable"]}


def mediapipe_probabilities(path, texts, labels) -> np.ndarray:
    """(len(texts), len(labels)) scores from MediaPipe's TextClassifier on the file at `path`, in `labels` order."""
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.text import text_classifier

    options = text_classifier.TextClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)))
    rows = []
    with text_classifier.TextClassifier.create_from_options(options) as classifier:
        for text in texts:
            (head,) = classifier.classify(text).classifications
            scores = {c.category_name: c.score for c in head.categories}
            rows.append([scores[label] for label in labels])
    return np.array(rows, np.float64)


def mediapipe_agreement(model, path, dev, labels, out_path=None, features=None, max_score_diff: float = 0.2) -> dict:
    """Writes MediaPipe metadata into a copy of the exported file at `path` (`out_path`, default `<path>_mp.tflite`)
    and runs MediaPipe on `dev`'s raw sentences: `mediapipe_agreement` (same label as the interpreter on the file's
    own tokens), `mediapipe_score` (MediaPipe's accuracy) and the file it ran. `max_score_diff` is
    `write_metadata`'s Keras check on its probe sentence (quantized files differ from Keras by their rounding).

    Raises:
      ValueError: `dev` is a sentence-pair task (the TextClassifier takes one string).
    """
    if any(len(t) != 1 for t in dev.texts):
        raise ValueError(f"MediaPipe's TextClassifier takes one string; {dev.task.name} has sentence pairs")
    out_path = out_path or str(path)[:-len(".tflite")] + "_mp.tflite"
    written = write_metadata(path, model, labels, out_path, max_score_diff=max_score_diff)
    features = features if features is not None else encode(dev.texts, model.preprocessor)
    interpreter = run_litert(path, features).argmax(-1)
    predicted = mediapipe_probabilities(written.path, [t[0] for t in dev.texts], labels).argmax(-1)
    return {"mediapipe_agreement": round(float(np.mean(predicted == interpreter)), 4),
            "mediapipe_score": round(float(np.mean(predicted == dev.labels)), 4), "mediapipe_file": written.path}
