"""MediaPipe metadata: MediaPipe's own TextClassifier loads the file and its scores on raw strings are the Keras
model's probabilities; the broken files a new user writes by hand are refused before they reach a phone."""

import importlib.util

import keras
import numpy as np
import pytest

from tfbertopt.data.pipeline import encode, without_preprocessor
from tfbertopt.export import metadata as md
from tfbertopt.export.litert import export_litert
from tfbertopt.export.metadata import MetadataError, check_for_mediapipe, read_metadata, write_metadata
from tfbertopt.train import finetune, predict_logits

HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None
needs_mediapipe = pytest.mark.skipif(
    not HAS_MEDIAPIPE, reason="mediapipe is not installed (pip install mediapipe, or '.[test]'): writing metadata "
                              "needs its schema classes and the end-to-end check needs its TextClassifier")
LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny classifier trained on the demo data and its float32 export at sequence length 16."""
    from tfbertopt.data.demo import demo_examples, demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    clf = tiny_bert_classifier(demo_vocabulary(), num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64,
                               sequence_length=16)
    finetune(clf, demo_examples("train", 512), epochs=4, batch_size=16, learning_rate=3e-3, length_grouping=1,
             verbose=0)
    path = export_litert(clf, tmp_path_factory.mktemp("md") / "m.tflite", sequence_length=16).path
    return clf, path


def keras_probabilities(clf, texts):
    logits = predict_logits(clf, encode([(t,) for t in texts], clf.preprocessor))
    return np.asarray(keras.ops.softmax(logits))


def mediapipe_scores(path, texts, labels=LABELS):
    from tfbertopt.bench.mediapipe import mediapipe_probabilities

    return mediapipe_probabilities(path, texts, labels).astype(np.float32)


@needs_mediapipe
def test_mediapipe_scores_match_keras_probabilities(trained, tmp_path):
    from tfbertopt.data.demo import demo_examples

    clf, path = trained
    result = write_metadata(path, clf, LABELS, tmp_path / "m_mediapipe.tflite")
    dev = demo_examples("dev", 48)
    texts = [t[0] for t in dev.texts] + ["The Movie Is NOT Great!", "unheardof words here"]
    expected = keras_probabilities(clf, texts)
    got = mediapipe_scores(result.path, texts)
    assert np.abs(got - expected).max() <= 0.02
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
    # The model is trained, so the comparison is not between two constant outputs.
    assert (got[:len(dev)].argmax(-1) == dev.labels).mean() >= 0.8


@needs_mediapipe
def test_metadata_round_trips(trained, tmp_path):
    clf, path = trained
    result = write_metadata(path, clf, LABELS, tmp_path / "m.tflite")
    meta = read_metadata(result.path)
    assert meta["labels"] == LABELS
    assert meta["vocabulary"] == list(clf.preprocessor.tokenizer.get_vocabulary())
    assert meta["tokenizer"] == "BertTokenizerOptionsT"
    assert meta["outputs"] == ("probabilities",)
    assert meta["inputs"] == tuple(name for _, name in result.input_layout)
    assert sorted(meta["inputs"]) == ["ids", "mask", "segment_ids"]
    assert result.sequence_length == 16
    # Writing again over a file that has metadata replaces it, not appends to it.
    again = write_metadata(result.path, clf, ["neg", "pos"])
    assert read_metadata(again.path)["labels"] == ["neg", "pos"]


def test_input_layout_follows_the_subgraph_not_the_signature(trained):
    _, path = trained
    layout = md.mediapipe_input_layout(path)
    inputs, _ = md._io_tensors(open(path, "rb").read())
    for (feature, name), tensor in zip(layout, inputs):
        assert feature in tensor["name"]
        assert md.MEDIAPIPE_INPUT_NAMES[feature] == name


def naive_export(clf, path):
    """What a new user writes from the TFLite guide: convert a tf.function that calls the Keras 3 model."""
    import tensorflow as tf

    spec = [tf.TensorSpec((1, 16), tf.int32, name=n) for n in ("token_ids", "padding_mask", "segment_ids")]

    @tf.function(input_signature=spec)
    def serve(token_ids, padding_mask, segment_ids):
        with without_preprocessor(clf):
            logits = clf({"token_ids": token_ids, "padding_mask": padding_mask, "segment_ids": segment_ids})
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], clf)
    with open(path, "wb") as f:
        f.write(converter.convert())
    return str(path)


def test_naive_export_nan_scores_are_refused(trained, tmp_path):
    """The NaN of issue 7: the naive conversion leaves the weights as uninitialised variables and the interpreter's
    scores are NaN; write_metadata refuses the file. MediaPipe runs the same file without complaint; its scores are
    whatever the uninitialised memory gives (NaN on most runs, [1, 0] on one CI run), so only that it runs is
    asserted."""
    clf, _ = trained
    path = naive_export(clf, tmp_path / "naive.tflite")
    token_ids = np.zeros((1, 16), np.int32)
    token_ids[0, :3] = [2, 10, 3]
    assert np.isnan(md.run_probabilities(path, token_ids, (token_ids > 0).astype(np.int32))).all()
    with pytest.raises(MetadataError, match="non-finite scores"):
        write_metadata(path, clf, LABELS, tmp_path / "out.tflite")
    assert not (tmp_path / "out.tflite").exists()
    if HAS_MEDIAPIPE:  # the same file with metadata written without the checks: MediaPipe reports NaN
        buf = open(path, "rb").read()
        vocab = md._vocabulary(clf.preprocessor.tokenizer)
        unchecked = tmp_path / "unchecked.tflite"
        unchecked.write_bytes(md._embed(buf, vocab, md.mediapipe_input_layout(buf), LABELS, "probabilities", {}))
        assert mediapipe_scores(unchecked, ["the movie is great"]).shape == (1, len(LABELS))


def test_hand_written_input_orders_break_the_scores(trained):
    """MediaPipe matches input metadata to the subgraph's inputs by position. Written in Model Maker's order (ids,
    mask, segment_ids) the ids land in the segment-id embedding lookup and MediaPipe stops with 'gather index out
    of bounds'; written in the signature's alphabetical order (the order `get_signature_runner` shows) the model
    runs on shuffled inputs and gives wrong scores without any error. write_metadata takes the order from the
    subgraph's tensor names (run here as MediaPipe feeds the tensors, without MediaPipe, which can hang after an
    invoke error)."""
    clf, path = trained
    texts = ["the movie is great", "the script was not really dull", "its cast is boring"]
    features = encode([(t,) for t in texts], clf.preprocessor)
    expected = keras_probabilities(clf, texts)
    right = md.run_probabilities(path, features["token_ids"], features["padding_mask"])
    assert np.abs(right - expected).max() <= 1e-4
    model_maker = (("token_ids", "ids"), ("padding_mask", "mask"), ("segment_ids", "segment_ids"))
    alphabetical = (("padding_mask", "mask"), ("segment_ids", "segment_ids"), ("token_ids", "ids"))
    assert md.mediapipe_input_layout(path) not in (model_maker, alphabetical)
    with pytest.raises(RuntimeError, match="gather index out of bounds"):
        md.run_probabilities(path, features["token_ids"], features["padding_mask"], layout=model_maker)
    wrong = md.run_probabilities(path, features["token_ids"], features["padding_mask"], layout=alphabetical)
    assert np.abs(wrong - expected).max() > 0.01


def test_refuses_what_mediapipe_cannot_run_right(trained, tmp_path):
    clf, path = trained
    with pytest.raises(MetadataError, match="3 labels for a probabilities output of 2 classes"):
        check_for_mediapipe(path, clf, ["a", "b", "c"])
    with pytest.raises(MetadataError, match="distinct"):
        check_for_mediapipe(path, clf, ["a", "a"])
    with pytest.raises(MetadataError, match="raw values as the scores"):
        check_for_mediapipe(path, clf, LABELS, output="scores")
    dynamic = export_litert(clf, tmp_path / "dyn.tflite", sequence_length=None).path
    with pytest.raises(MetadataError, match="fixed sequence_length"):
        check_for_mediapipe(dynamic, clf, LABELS)


def test_refuses_cased_tokenizers_and_two_input_models(tmp_path):
    import keras_hub

    from tfbertopt.models import tiny_bert_classifier

    clf = tiny_bert_classifier(["good", "bad"], num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32,
                               sequence_length=8)
    path = export_litert(clf, tmp_path / "m.tflite", sequence_length=8).path
    cased = keras_hub.models.BertTokenizer(vocabulary=clf.preprocessor.tokenizer.get_vocabulary(), lowercase=False)
    with pytest.raises(MetadataError, match="lower-cases every input"):
        check_for_mediapipe(path, cased, LABELS)
    backbone = keras_hub.models.DistilBertBackbone(vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8,
                                                   intermediate_dim=16, max_sequence_length=16)
    distil = keras_hub.models.DistilBertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    two = export_litert(distil, tmp_path / "d.tflite", sequence_length=8).path
    with pytest.raises(MetadataError, match="exactly 3 int32 inputs"):
        md.mediapipe_input_layout(two)


def constant_bytes(path) -> list[bytes]:
    """The bytes of every constant tensor of the file's main subgraph, in tensor order, wherever the file stores them
    (inside the flatbuffer, or after it at `offset`, as ai-edge-quantizer writes them)."""
    from tensorflow.lite.python import schema_py_generated as schema

    buf = open(path, "rb").read()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))
    out = []
    for tensor in model.subgraphs[0].tensors:
        b = model.buffers[tensor.buffer]
        if b.offset > 1:
            out.append(buf[b.offset:b.offset + b.size])
        elif b.data is not None:
            out.append(np.asarray(b.data, np.uint8).tobytes())
    return out


@needs_mediapipe
def test_constants_stored_after_the_flatbuffer_survive(tmp_path):
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    # Over 256 KiB of weights: ai-edge-quantizer then stores them after the flatbuffer.
    clf = tiny_bert_classifier(demo_vocabulary(), num_layers=2, hidden_dim=128, num_heads=2, intermediate_dim=512,
                               sequence_length=16)
    path = export_litert(clf, tmp_path / "m.tflite", "dynamic-int4-tables", sequence_length=16).path
    before = constant_bytes(path)
    assert sum(map(len, before)) > 256 * 1024
    written = write_metadata(path, clf, LABELS, tmp_path / "m_md.tflite", max_score_diff=0.2)
    assert constant_bytes(written.path) == before
