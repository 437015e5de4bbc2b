"""MediaPipe's TextClassifier on raw strings, compared label for label with the interpreter on the same file."""

import numpy as np
import pytest

from tfbertopt.bench.mediapipe import mediapipe_agreement
from tfbertopt.data.demo import demo_examples
from tfbertopt.data.glue import Examples, get_task
from tfbertopt.data.pipeline import encode
from tfbertopt.export.litert import export_litert
from tfbertopt.export.verify import run_litert
from tfbertopt.train import finetune

pytest.importorskip("mediapipe")
LABELS = ["negative", "positive"]


def test_mediapipe_labels_match_the_interpreter_on_raw_sentences(tiny_classifier, tmp_path):
    train, dev = demo_examples("train", 512), demo_examples("dev", 64)
    finetune(tiny_classifier, train, None, epochs=3, batch_size=16, learning_rate=3e-3, verbose=0)
    for quantization in ("dynamic", "dynamic-int4-tables"):
        path = export_litert(tiny_classifier, tmp_path / f"m_{quantization}.tflite", quantization, 16).path
        found = mediapipe_agreement(tiny_classifier, path, dev, LABELS)
        interpreter = run_litert(path, encode(dev.texts, tiny_classifier.preprocessor)).argmax(-1)
        accuracy = float(np.mean(interpreter == dev.labels))
        assert accuracy >= 0.8, accuracy      # a model that separates the classes, so agreement means something
        assert found["mediapipe_agreement"] >= 0.95, (quantization, found)
        assert abs(found["mediapipe_score"] - accuracy) <= 1 - found["mediapipe_agreement"] + 1e-4   # rounded


def test_sentence_pairs_are_refused_in_one_line(shared_classifier, tmp_path):
    dev = demo_examples("dev", 4)
    pairs = Examples(get_task("mrpc"), "dev", [(t[0], t[0]) for t in dev.texts], dev.labels, "mem", [])
    with pytest.raises(ValueError, match="TextClassifier takes one string; mrpc has sentence pairs"):
        mediapipe_agreement(shared_classifier, tmp_path / "unused.tflite", pairs, LABELS)
